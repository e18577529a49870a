//! `_routes.json`: which requests run the project's Functions, the rest going straight to its
//! assets.
//!
//! Cloudflare's rules: `{"version": 1, "include": [...], "exclude": [...]}`; `include` has at
//! least one rule; every rule starts with `/` and may use `*` for any rest (slashes
//! included); include and exclude hold at most 100 rules together, each at most 100
//! characters; a path that an exclude rule matches never runs a Function.

use super::pattern::Pattern;
use super::RuleError;
use serde::Deserialize;

const FILE: &str = "_routes.json";
pub const MAX_RULES: usize = 100;
pub const MAX_RULE: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesJson {
    version: u32,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    /// Written by wrangler's builds; carries no rule.
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
}

/// Parses `_routes.json`.
pub fn parse(text: &str) -> Result<Routes, RuleError> {
    let routes: RoutesJson = serde_json::from_str(text).map_err(|e| RuleError::at(FILE, e.line(), e.to_string()))?;
    let whole = |message: String| Err(RuleError::at(FILE, 0, message));
    if routes.version != 1 {
        return whole(format!("version is {}; Nimbus reads version 1", routes.version));
    }
    if routes.include.is_empty() {
        return whole("`include` needs at least one rule".into());
    }
    let count = routes.include.len() + routes.exclude.len();
    if count > MAX_RULES {
        return whole(format!("include and exclude hold at most {MAX_RULES} rules together; these hold {count}"));
    }
    for rule in routes.include.iter().chain(&routes.exclude) {
        if !rule.starts_with('/') {
            return whole(format!("the rule {rule:?} must start with `/`"));
        }
        if rule.chars().count() > MAX_RULE {
            return whole(format!("the rule {rule:?} is longer than {MAX_RULE} characters"));
        }
    }
    let compile = |rules: &[String]| rules.iter().map(|r| Pattern::parse(r, false)).collect();
    Ok(Routes { include: compile(&routes.include), exclude: compile(&routes.exclude) })
}

impl Routes {
    /// Whether a request for `path` runs the Functions.
    pub fn runs_functions(&self, path: &str) -> bool {
        !self.exclude.iter().any(|p| p.matches(path).is_some())
            && self.include.iter().any(|p| p.matches(path).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudflare_example_exclude_wins() {
        // The example of Cloudflare's Functions routing page.
        let routes =
            parse(r#"{ "version": 1, "include": ["/*"], "exclude": ["/build/*", "/static/*"] }"#).expect("parses");
        assert!(routes.runs_functions("/"));
        assert!(routes.runs_functions("/api/users"));
        assert!(!routes.runs_functions("/build/app.js"));
        assert!(!routes.runs_functions("/static/img/logo.png"));
        let routes = parse(r#"{ "version": 1, "include": ["/api/*", "/login"], "exclude": [] }"#).expect("parses");
        assert!(routes.runs_functions("/api/a/b") && routes.runs_functions("/login"));
        assert!(!routes.runs_functions("/login/other") && !routes.runs_functions("/"));
        let routes = parse(r#"{ "version": 1, "include": ["/a/*/c"] }"#).expect("parses");
        assert!(routes.runs_functions("/a/b/x/c"), "a wildcard spans segments");
    }

    #[test]
    fn errors() {
        let error = parse("{\n  \"version\": 1,\n  \"include\": [\"/a\",]\n}").expect_err("trailing comma");
        assert_eq!(error.line, 3, "{error}");
        for (text, words) in [
            (r#"{"version": 2, "include": ["/*"]}"#, "version 1"),
            (r#"{"version": 1, "include": []}"#, "at least one"),
            (r#"{"version": 1, "include": ["api/*"]}"#, "start with `/`"),
            (r#"{"version": 1, "include": ["/*"], "extra": 1}"#, "unknown field"),
        ] {
            assert!(parse(text).expect_err(text).to_string().contains(words), "{text}");
        }
        let many: Vec<String> = (0..=MAX_RULES).map(|i| format!("\"/p{i}\"")).collect();
        let text = format!("{{\"version\": 1, \"include\": [{}]}}", many.join(","));
        assert!(parse(&text).expect_err("101").message.contains("at most 100"));
    }
}
