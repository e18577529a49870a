//! Which worker answers a request: by `Host` (`<name>.<suffix>`) or by a manifest route.
//!
//! Routes are ordered most specific first: an exact host before a wildcard host before no
//! host, then the longer path before the shorter, then an exact path before a prefix.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com`.
    Suffix(String),
    Any,
}

#[derive(Debug, Clone)]
struct Route {
    host: HostMatch,
    path: String,
    /// The route ended with `*`: `path` is a prefix.
    prefix: bool,
    worker: String,
}

impl Route {
    fn parse(pattern: &str, worker: &str) -> Option<Route> {
        let slash = pattern.find('/')?;
        let (host, path) = pattern.split_at(slash);
        let host = if host.is_empty() {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostMatch::Suffix(suffix.to_ascii_lowercase())
        } else {
            HostMatch::Exact(host.to_ascii_lowercase())
        };
        let (path, prefix) = match path.strip_suffix('*') {
            Some(p) => (p.to_string(), true),
            None => (path.to_string(), false),
        };
        Some(Route { host, path, prefix, worker: worker.to_string() })
    }

    /// The route as written, normalised, for a stable order among equals.
    fn pattern(&self) -> (String, &str, bool) {
        let host = match &self.host {
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Suffix(s) => format!("*.{s}"),
            HostMatch::Any => String::new(),
        };
        (host, self.path.as_str(), self.prefix)
    }

    fn rank(&self) -> (u8, usize, bool) {
        let host = match &self.host {
            HostMatch::Exact(_) => 2,
            HostMatch::Suffix(_) => 1,
            HostMatch::Any => 0,
        };
        (host, self.path.len(), !self.prefix)
    }

    fn matches(&self, host: &str, path: &str) -> bool {
        let host_ok = match &self.host {
            HostMatch::Exact(h) => h == host,
            HostMatch::Suffix(s) => {
                host.len() > s.len() && host.ends_with(s.as_str()) && host.as_bytes()[host.len() - s.len() - 1] == b'.'
            }
            HostMatch::Any => true,
        };
        host_ok && if self.prefix { path.starts_with(&self.path) } else { path == self.path }
    }
}

#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    /// `.workers.localhost`, with the leading dot.
    suffix: String,
    /// Worker names that exist, for `<name>.<suffix>` lookups.
    names: HashMap<String, ()>,
    routes: Vec<Route>,
}

impl RouteTable {
    /// `workers` yields (worker name, its manifest routes).
    pub fn build<'a>(suffix: &str, workers: impl IntoIterator<Item = (&'a str, &'a [String])>) -> RouteTable {
        let mut table = RouteTable {
            suffix: format!(".{}", suffix.trim_start_matches('.').to_ascii_lowercase()),
            ..Default::default()
        };
        for (name, routes) in workers {
            table.names.insert(name.to_string(), ());
            table.routes.extend(routes.iter().filter_map(|r| Route::parse(r, name)));
        }
        // Most specific first; routes equally specific (the control plane refuses the same
        // route twice, but `a.com/x*` and `a.com/y*` tie) are ordered by pattern and worker,
        // so every node picks the same one whatever order its workers arrived in.
        table.routes.sort_by(|a, b| {
            b.rank().cmp(&a.rank()).then_with(|| a.pattern().cmp(&b.pattern())).then_with(|| a.worker.cmp(&b.worker))
        });
        table
    }

    /// The worker for a request, or `None`. `host` may carry a port.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&str> {
        let host = strip_port(host).to_ascii_lowercase();
        if let Some(name) = host.strip_suffix(&self.suffix) {
            return self.names.get_key_value(name).map(|(k, _)| k.as_str());
        }
        self.routes.iter().find(|r| r.matches(&host, path)).map(|r| r.worker.as_str())
    }

    /// True when `host` names a worker, so platform paths (`/healthz`…) must not shadow it.
    pub fn claims_host(&self, host: &str) -> bool {
        let host = strip_port(host).to_ascii_lowercase();
        host.ends_with(&self.suffix)
            || self.routes.iter().any(|r| r.host != HostMatch::Any && r.matches(&host, &r.path))
    }
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        // `[::1]:8080` or `example.com:8080`, but not a bare IPv6 address.
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let api = ["example.com/api/*".to_string()];
        let site = ["example.com/*".to_string(), "*.example.com/*".to_string()];
        let exact = ["example.com/api/health".to_string()];
        let any = ["/static/*".to_string()];
        RouteTable::build(
            "workers.localhost",
            [("api", &api[..]), ("site", &site[..]), ("health", &exact[..]), ("assets", &any[..]), ("hello", &[][..])],
        )
    }

    #[test]
    fn host_suffix_names_the_worker() {
        let t = table();
        assert_eq!(t.lookup("hello.workers.localhost", "/"), Some("hello"));
        assert_eq!(t.lookup("HELLO.workers.localhost:8081", "/x"), Some("hello"));
        assert_eq!(t.lookup("nope.workers.localhost", "/"), None);
    }

    #[test]
    fn most_specific_route_wins() {
        let t = table();
        assert_eq!(t.lookup("example.com", "/api/health"), Some("health"));
        assert_eq!(t.lookup("example.com", "/api/users"), Some("api"));
        assert_eq!(t.lookup("example.com", "/"), Some("site"));
        assert_eq!(t.lookup("www.example.com", "/api/users"), Some("site"));
        assert_eq!(t.lookup("other.org", "/static/a.css"), Some("assets"));
        assert_eq!(t.lookup("other.org", "/"), None);
        assert_eq!(t.lookup("notexample.com", "/"), None);
    }

    #[test]
    fn equal_routes_resolve_the_same_whatever_the_order_workers_arrived_in() {
        let a = ["a.com/x*".to_string()];
        let b = ["a.com/y*".to_string(), "a.com/x*".to_string()];
        let one = RouteTable::build("w", [("alpha", &a[..]), ("beta", &b[..])]);
        let two = RouteTable::build("w", [("beta", &b[..]), ("alpha", &a[..])]);
        for path in ["/x", "/xy", "/y"] {
            assert_eq!(one.lookup("a.com", path), two.lookup("a.com", path), "{path}");
        }
        assert_eq!(one.lookup("a.com", "/x"), Some("alpha"), "a tie goes to the first worker by name");
    }

    #[test]
    fn platform_paths_yield_only_to_worker_hosts() {
        let t = table();
        assert!(t.claims_host("hello.workers.localhost"));
        assert!(t.claims_host("example.com:80"));
        assert!(!t.claims_host("127.0.0.1:8081"));
    }
}
