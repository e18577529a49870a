//! Pages' rules, as Cloudflare Pages reads them: `_redirects`, `_headers`, `_routes.json`,
//! and the order in which a `functions/` directory's routes are tried. `PAGES.md` (next to
//! `ARCHITECTURE.md`) is the plan this crate starts.
//!
//! It parses the files a deployment carries and answers what applies to a path. The control
//! plane parses at deploy, so a broken file is refused with its name and line before anything
//! changes; the nodes apply the parsed rules when they serve. The one thing on disk is
//! [`blobs`], the content-addressed directory both sides keep. Must never: touch the network,
//! or depend on another Nimbus crate (the control plane and the CLI use it).
//!
//! # Layout
//! - [`blobs`]: the content-addressed blob directory (checked in, fsynced, swept).
//! - [`assets`]: which file answers a path (clean URLs, the nearest `404.html`, single-page
//!   applications) and its `Content-Type`.
//! - [`pattern`]: the patterns rules match paths with (`*` splat, `:placeholder`).
//! - [`redirects`]: `_redirects` (redirects and 200 rewrites, first match wins).
//! - [`headers`]: `_headers` (every matching rule's headers, `! Name` removes).
//! - [`routes`]: `_routes.json` (which paths run Functions; exclude wins).
//! - [`functions`]: a `functions/` file's route, and wrangler's order of routes.
//! - [`site`]: a deployment's manifest, checked, and what answers a request.
//! - [`RuleError`]: what is wrong, with the file and line.

pub mod assets;
pub mod blobs;
pub mod functions;
pub mod headers;
pub mod pattern;
pub mod redirects;
pub mod routes;
pub mod site;

/// What is wrong with a rules file, worded for the person who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RuleError {
    pub file: &'static str,
    /// 1-based; 0 when the error is about the whole file.
    pub line: usize,
    pub message: String,
}

impl RuleError {
    fn at(file: &'static str, line: usize, message: impl Into<String>) -> RuleError {
        RuleError { file, line, message: message.into() }
    }
}
