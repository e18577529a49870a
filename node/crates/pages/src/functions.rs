//! A `functions/` directory's routes, as wrangler builds them.
//!
//! A file's path is its route: `index.js` answers its directory, `[id].js` one segment as
//! `params.id`, `[[path]].js` any number of segments (at least none) as `params.path`, an
//! array; `_middleware.js` runs before every route at or below its directory. Routes are
//! tried in wrangler's `compareRoutes` order: more segments first; at the first segment where
//! they differ in kind, static before `:param` before a catch-all; a route with a method
//! (`onRequestGet`) before one without (`onRequest`); then by path.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// What a file of `functions/` becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRoute {
    /// `/`, `/users/:id`, `/docs/:path*`.
    pub path: String,
    /// `_middleware`: runs for `path` and everything below it.
    pub middleware: bool,
}

/// The extensions a Function may have.
pub const EXTENSIONS: [&str; 4] = [".js", ".mjs", ".ts", ".mts"];

/// The route of `file`, a path relative to `functions/` (`api/users/[id].ts`); `None` for a
/// file that is not a Function (another extension).
pub fn route_of(file: &str) -> Result<Option<FileRoute>, String> {
    let Some(stem) = EXTENSIONS.iter().find_map(|ext| file.strip_suffix(ext)) else { return Ok(None) };
    let mut segments: Vec<String> = Vec::new();
    let parts: Vec<&str> = stem.split('/').filter(|s| !s.is_empty()).collect();
    let mut middleware = false;
    for (at, part) in parts.iter().enumerate() {
        let last = at + 1 == parts.len();
        let segment = if let Some(name) = part.strip_prefix("[[").and_then(|p| p.strip_suffix("]]")) {
            check_name(name, file)?;
            if !last {
                return Err(format!("{file}: a catch-all `[[{name}]]` must be the last part of the path"));
            }
            format!(":{name}*")
        } else if let Some(name) = part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
            check_name(name, file)?;
            format!(":{name}")
        } else if last && *part == "index" {
            continue;
        } else if last && *part == "_middleware" {
            middleware = true;
            continue;
        } else {
            if part.contains(['[', ']', ':', '*']) {
                return Err(format!("{file}: `{part}` mixes brackets or `:`/`*` into a static name"));
            }
            (*part).to_owned()
        };
        segments.push(segment);
    }
    Ok(Some(FileRoute { path: format!("/{}", segments.join("/")), middleware }))
}

fn check_name(name: &str, file: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("{file}: `{name}` is not a parameter name (letters, digits and `_`)"))
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// wrangler's `compareRoutes`: the order in which routes are tried.
pub fn compare(a: (&str, Option<&str>), b: (&str, Option<&str>)) -> Ordering {
    let (sa, sb) = (segments(a.0), segments(b.0));
    if sa.len() != sb.len() {
        return sb.len().cmp(&sa.len());
    }
    for (x, y) in sa.iter().zip(&sb) {
        let (wild_x, wild_y) = (x.contains('*'), y.contains('*'));
        if wild_x != wild_y {
            return if wild_x { Ordering::Greater } else { Ordering::Less };
        }
        let (param_x, param_y) = (x.contains(':'), y.contains(':'));
        if param_x != param_y {
            return if param_x { Ordering::Greater } else { Ordering::Less };
        }
    }
    match (a.1.is_some(), b.1.is_some()) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.0.cmp(b.0),
    }
}

/// A parameter's value: one segment, or a catch-all's segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    One(String),
    Many(Vec<String>),
}

/// Matches `path` against a route path (`/users/:id`, `/docs/:rest*`); the parameters if it
/// does. With `prefix`, the route also matches any path below it (middleware).
pub fn match_route(route: &str, path: &str, prefix: bool) -> Option<BTreeMap<String, Param>> {
    let (pattern, actual) = (segments(route), segments(path));
    let mut params = BTreeMap::new();
    for (at, part) in pattern.iter().enumerate() {
        if let Some(name) = part.strip_prefix(':').and_then(|p| p.strip_suffix('*')) {
            let rest: Vec<String> = actual.get(at..).unwrap_or_default().iter().map(|s| (*s).to_owned()).collect();
            params.insert(name.to_owned(), Param::Many(rest));
            return Some(params);
        }
        let segment = actual.get(at)?;
        match part.strip_prefix(':') {
            Some(name) => {
                params.insert(name.to_owned(), Param::One((*segment).to_owned()));
            }
            None if part == segment => {}
            None => return None,
        }
    }
    (prefix || actual.len() == pattern.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(file: &str) -> String {
        route_of(file).expect("valid").expect("a Function").path
    }

    #[test]
    fn file_paths_become_routes() {
        assert_eq!(route("index.js"), "/");
        assert_eq!(route("helloworld.js"), "/helloworld");
        assert_eq!(route("howdy/index.ts"), "/howdy");
        assert_eq!(route("users/[user].js"), "/users/:user");
        assert_eq!(route("users/[[catchall]].mts"), "/users/:catchall*");
        assert_eq!(
            route_of("api/_middleware.ts").expect("valid"),
            Some(FileRoute { path: "/api".into(), middleware: true })
        );
        assert_eq!(route_of("README.md").expect("valid"), None);
        assert!(route_of("[[a]]/b.js").is_err(), "a catch-all is last");
        assert!(route_of("[1x].js").is_err());
    }

    #[test]
    fn wrangler_order() {
        let mut routes = vec![
            ("/", None),
            ("/users/:user*", None),
            ("/users/:user", None),
            ("/users/special", None),
            ("/users/:user", Some("GET")),
            ("/date", Some("POST")),
            ("/date", None),
            ("/a/b/c", None),
        ];
        routes.sort_by(|a, b| compare(*a, *b));
        assert_eq!(
            routes,
            vec![
                ("/a/b/c", None),
                ("/users/special", None),
                ("/users/:user", Some("GET")),
                ("/users/:user", None),
                ("/users/:user*", None),
                ("/date", Some("POST")),
                ("/date", None),
                ("/", None),
            ]
        );
    }

    #[test]
    fn params_and_catch_alls() {
        let p = match_route("/users/:user", "/users/ada", false).expect("matches");
        assert_eq!(p["user"], Param::One("ada".into()));
        assert!(match_route("/users/:user", "/users/ada/posts", false).is_none());
        let p = match_route("/docs/:path*", "/docs/a/b/c", false).expect("matches");
        assert_eq!(p["path"], Param::Many(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(match_route("/docs/:path*", "/docs", false).expect("none is enough")["path"], Param::Many(vec![]));
        assert!(match_route("/api", "/api/x/y", true).is_some(), "middleware covers what is below");
        assert!(match_route("/api", "/apis", true).is_none());
        assert!(match_route("/", "/anything", true).is_some());
    }
}
