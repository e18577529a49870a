//! `_redirects`: one rule per line, `source destination [status]`, `#` comments.
//!
//! Cloudflare's rules: the status is 301, 302 (the default), 303, 307, 308, or 200 (a rewrite:
//! the destination's asset is served at the source's URL, so it must be a path of the site);
//! the source is a path, with at most one `*` (its match is `:splat` in the destination) and
//! `:placeholders` (one segment each); the destination a path or a URL; the first rule that
//! matches wins, whether or not an asset exists at the path. A file holds at most 2,000
//! static rules and 100 dynamic ones; once a dynamic rule appears, every later rule counts as
//! dynamic (Cloudflare's accounting), and a line is at most 1,000 characters. Nimbus refuses a
//! line Cloudflare would skip, naming it, so a mistake shows at deploy.

use super::pattern::{substitute, Pattern};
use super::RuleError;

const FILE: &str = "_redirects";
pub const MAX_STATIC: usize = 2_000;
pub const MAX_DYNAMIC: usize = 100;
pub const MAX_LINE: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub source: Pattern,
    pub destination: String,
    pub status: u16,
    /// The line it came from (1-based).
    pub line: usize,
}

/// What a rule says for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer `status` with `Location: location`.
    Redirect { status: u16, location: String },
    /// Serve the asset at `path` under the request's URL.
    Rewrite { path: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirects {
    pub rules: Vec<Redirect>,
}

/// Parses a `_redirects` file; the first error names its line.
pub fn parse(text: &str) -> Result<Redirects, RuleError> {
    let mut rules = Vec::new();
    let (mut statics, mut dynamics, mut dynamic_seen) = (0usize, 0usize, false);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let error = |message: String| Err(RuleError::at(FILE, line, message));
        if raw.chars().count() > MAX_LINE {
            return error(format!("a rule is at most {MAX_LINE} characters"));
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let (source, destination, status) = match fields.as_slice() {
            [source, destination] => (*source, *destination, 302),
            [source, destination, status] => match status.parse::<u16>() {
                Ok(code @ (200 | 301 | 302 | 303 | 307 | 308)) => (*source, *destination, code),
                _ => return error(format!("status {status:?} is not 200, 301, 302, 303, 307 or 308")),
            },
            _ => {
                return error(format!("a rule is `source destination [status]`; this line has {} fields", fields.len()))
            }
        };
        if !source.starts_with('/') {
            return error(format!(
                "the source {source:?} must be a path starting with `/` (no domain-level redirects)"
            ));
        }
        let pattern = Pattern::parse(source, true);
        if pattern.splats() > 1 {
            return error(format!("the source {source:?} has more than one `*`"));
        }
        let external = destination.starts_with("http://") || destination.starts_with("https://");
        if !external && !destination.starts_with('/') {
            return error(format!(
                "the destination {destination:?} must be a path starting with `/` or an http(s) URL"
            ));
        }
        if status == 200 && external {
            return error("a 200 rewrite serves a path of this site; proxying to another host is not supported".into());
        }
        for name in destination_placeholders(destination) {
            if name != "splat" && !pattern.placeholders().contains(&name.as_str()) {
                return error(format!("the destination uses :{name}, which the source does not define"));
            }
            if name == "splat" && pattern.splats() == 0 {
                return error("the destination uses :splat, but the source has no `*`".into());
            }
        }
        if rules.iter().any(|r: &Redirect| r.source.source() == source) {
            return error(format!("the source {source:?} is already redirected above (the first rule wins)"));
        }
        dynamic_seen |= pattern.is_dynamic();
        if dynamic_seen {
            dynamics += 1;
            if dynamics > MAX_DYNAMIC {
                return error(format!(
                    "more than {MAX_DYNAMIC} dynamic rules (every rule after the first dynamic one counts; put static rules first)"
                ));
            }
        } else {
            statics += 1;
            if statics > MAX_STATIC {
                return error(format!("more than {MAX_STATIC} static rules"));
            }
        }
        rules.push(Redirect { source: pattern, destination: destination.to_owned(), status, line });
    }
    Ok(Redirects { rules })
}

fn destination_placeholders(destination: &str) -> Vec<String> {
    // Only the path and query of a URL carry placeholders (`https://host:8080` is a port).
    let path = match destination.find("://") {
        Some(at) => destination[at + 3..].find('/').map_or("", |slash| &destination[at + 3 + slash..]),
        None => destination,
    };
    super::pattern::names_in(path)
}

impl Redirects {
    /// What the first matching rule says for `path` (and the request's query, kept unless
    /// the destination has its own).
    pub fn apply(&self, path: &str, query: Option<&str>) -> Option<Action> {
        for rule in &self.rules {
            let Some(captures) = rule.source.matches(path) else { continue };
            let mut target = substitute(&rule.destination, &captures);
            if let Some(query) = query.filter(|q| !q.is_empty()) {
                if !target.contains('?') {
                    let (before, fragment) = match target.find('#') {
                        Some(at) => (target[..at].to_owned(), target[at..].to_owned()),
                        None => (target.clone(), String::new()),
                    };
                    target = format!("{before}?{query}{fragment}");
                }
            }
            return Some(if rule.status == 200 {
                Action::Rewrite { path: target }
            } else {
                Action::Redirect { status: rule.status, location: target }
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of Cloudflare's Redirects page.
    const CLOUDFLARE: &str = "
/home301 / 301
/home302 / 302
/querystrings /?query=string 301
/twitch https://twitch.tv
/trailing /trailing/ 301
/notrailing/ /nottrailing 301
/page/ /page2/#fragment 301
/blog/* https://blog.my.domain/:splat
/products/:code/:name /products?code=:code&name=:name
";

    fn redirect(status: u16, location: &str) -> Option<Action> {
        Some(Action::Redirect { status, location: location.into() })
    }

    #[test]
    fn cloudflare_examples() {
        let r = parse(CLOUDFLARE).expect("parses");
        assert_eq!(r.apply("/home301", None), redirect(301, "/"));
        assert_eq!(r.apply("/home302", None), redirect(302, "/"));
        assert_eq!(r.apply("/querystrings", None), redirect(301, "/?query=string"));
        assert_eq!(r.apply("/twitch", None), redirect(302, "https://twitch.tv"));
        assert_eq!(r.apply("/trailing", None), redirect(301, "/trailing/"));
        assert_eq!(r.apply("/page/", None), redirect(301, "/page2/#fragment"));
        assert_eq!(r.apply("/blog/a/b", None), redirect(302, "https://blog.my.domain/a/b"));
        assert_eq!(r.apply("/products/123/shoe", None), redirect(302, "/products?code=123&name=shoe"));
        assert_eq!(r.apply("/products/123", None), None);
        assert_eq!(r.apply("/elsewhere", None), None);
    }

    #[test]
    fn rewrites_queries_and_first_match() {
        let r = parse("/app/* /index.html 200\n/a /first\n/* /second\n").expect("parses");
        assert_eq!(r.apply("/app/settings", None), Some(Action::Rewrite { path: "/index.html".into() }));
        assert_eq!(r.apply("/a", Some("x=1")), redirect(302, "/first?x=1"));
        assert_eq!(r.apply("/b", None), redirect(302, "/second"));
        let r = parse("/p /q#top 301").expect("parses");
        assert_eq!(r.apply("/p", Some("x=1")), redirect(301, "/q?x=1#top"));
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, words) in [
            ("# ok\n\n/a /b 404\n", 3, "not 200, 301"),
            ("/a\n", 1, "fields"),
            ("/a /b 301 extra\n", 1, "fields"),
            ("a /b\n", 1, "starting with `/`"),
            ("/a b\n", 1, "destination"),
            ("/*/x/* /y\n", 1, "more than one `*`"),
            ("/a https://elsewhere/ 200\n", 1, "proxying"),
            ("/a/:x /b/:y\n", 1, ":y"),
            ("/a /b/:splat\n", 1, "no `*`"),
            ("/a /b\n/a /c\n", 2, "already"),
        ] {
            let error = parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.to_string().contains(words), "{text:?}: {error}");
            assert!(error.to_string().starts_with(&format!("_redirects:{line}: ")), "{error}");
        }
        let long = format!("/a /{}\n", "b".repeat(1_000));
        assert!(parse(&long).expect_err("long").message.contains("1000 characters"));
    }

    #[test]
    fn limits_count_every_rule_after_the_first_dynamic_one() {
        let statics: String = (0..MAX_STATIC).map(|i| format!("/s{i} /t\n")).collect();
        assert!(parse(&statics).is_ok());
        assert!(parse(&format!("{statics}/one-more /t\n")).expect_err("2001").message.contains("static"));
        let mut mixed = String::from("/d/* /t\n");
        mixed.extend((1..MAX_DYNAMIC).map(|i| format!("/s{i} /t\n")));
        assert!(parse(&mixed).is_ok());
        let error = parse(&format!("{mixed}/last /t\n")).expect_err("101 dynamic");
        assert_eq!(error.line, 101);
    }
}
