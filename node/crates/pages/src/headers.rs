//! `_headers`: a URL pattern on a line of its own, then its headers indented below it
//! (`Name: value`), `! Name` to remove a header an earlier rule (or the defaults) set, `#`
//! comments.
//!
//! Cloudflare's rules: every rule whose pattern matches applies, in file order; a header set
//! by several rules is joined with `, `; patterns use `*` (its match is `:splat` in values)
//! and `:placeholders`; at most 100 rules, a line at most 2,000 characters.

use super::pattern::{substitute, Pattern};
use super::RuleError;

const FILE: &str = "_headers";
pub const MAX_RULES: usize = 100;
pub const MAX_LINE: usize = 2_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    pub pattern: Pattern,
    /// Lower-case names and their values, in order.
    pub set: Vec<(String, String)>,
    /// Lower-case names `! Name` removes.
    pub unset: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pub rules: Vec<HeaderRule>,
}

fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a `_headers` file; the first error names its line.
pub fn parse(text: &str) -> Result<Headers, RuleError> {
    let mut rules: Vec<HeaderRule> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let error = |message: String| Err(RuleError::at(FILE, line, message));
        if raw.chars().count() > MAX_LINE {
            return error(format!("a line is at most {MAX_LINE} characters"));
        }
        let indented = raw.starts_with(' ') || raw.starts_with('\t');
        if !indented {
            let path = match trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://")) {
                Some(rest) => rest.find('/').map(|at| &rest[at..]).unwrap_or("/"),
                None => trimmed,
            };
            if !path.starts_with('/') || trimmed.contains(char::is_whitespace) {
                return error(format!(
                    "{trimmed:?} is not a URL pattern (a path starting with `/`); header lines are indented below one"
                ));
            }
            if rules.len() == MAX_RULES {
                return error(format!("more than {MAX_RULES} rules"));
            }
            // Host-qualified patterns are matched on their path (Nimbus serves one project's
            // hosts from one set of rules).
            rules.push(HeaderRule { pattern: Pattern::parse(path, true), set: Vec::new(), unset: Vec::new(), line });
            continue;
        }
        let Some(rule) = rules.last_mut() else {
            return error("a header line comes before any URL pattern".into());
        };
        if let Some(name) = trimmed.strip_prefix('!') {
            let name = name.trim();
            if !is_token(name) {
                return error(format!("{name:?} is not a header name"));
            }
            rule.unset.push(name.to_ascii_lowercase());
            continue;
        }
        let Some((name, value)) = trimmed.split_once(':') else {
            return error(format!("{trimmed:?} is not `Name: value` (or `! Name`)"));
        };
        let name = name.trim();
        if !is_token(name) {
            return error(format!("{name:?} is not a header name"));
        }
        let value = value.trim();
        if value.bytes().any(|b| b < 0x20 && b != b'\t') {
            return error(format!("the value of {name} has a control character"));
        }
        rule.set.push((name.to_ascii_lowercase(), value.to_owned()));
    }
    Ok(Headers { rules })
}

impl Headers {
    /// Applies every rule matching `path` to `headers` (lower-case names): values a rule sets
    /// are joined to those earlier rules set for the same name; `! Name` removes.
    pub fn apply(&self, path: &str, headers: &mut Vec<(String, String)>) {
        let mut set_here: Vec<(String, String)> = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        for rule in &self.rules {
            let Some(captures) = rule.pattern.matches(path) else { continue };
            removed.extend(rule.unset.iter().cloned());
            for (name, value) in &rule.set {
                let value = substitute(value, &captures);
                match set_here.iter_mut().find(|(n, _)| n == name) {
                    Some((_, existing)) => {
                        existing.push_str(", ");
                        existing.push_str(&value);
                    }
                    None => set_here.push((name.clone(), value)),
                }
            }
        }
        if set_here.is_empty() && removed.is_empty() {
            return;
        }
        headers.retain(|(n, _)| !removed.contains(n) && !set_here.iter().any(|(s, _)| s == n));
        headers.extend(set_here.into_iter().filter(|(n, _)| !removed.contains(n)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of Cloudflare's Headers page.
    const CLOUDFLARE: &str = "
# This is a comment
/secure/page
  X-Frame-Options: DENY
  X-Content-Type-Options: nosniff
  Referrer-Policy: no-referrer

/static/*
  Access-Control-Allow-Origin: *
  X-Robots-Tag: nosnippet

https://myproject.pages.dev/*
  X-Robots-Tag: noindex

/movies/:title
  x-movie-name: You are watching \":title\"

/*
  X-Robots-Tag: all

/*.jpg
  ! Access-Control-Allow-Origin
";

    fn headers_for(rules: &Headers, path: &str) -> Vec<(String, String)> {
        let mut headers = vec![("access-control-allow-origin".to_string(), "*".to_string())];
        rules.apply(path, &mut headers);
        headers.sort();
        headers
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        v.sort();
        v
    }

    #[test]
    fn cloudflare_examples() {
        let rules = parse(CLOUDFLARE).expect("parses");
        assert_eq!(rules.rules.len(), 6);
        assert_eq!(
            headers_for(&rules, "/secure/page"),
            pairs(&[
                ("access-control-allow-origin", "*"),
                ("referrer-policy", "no-referrer"),
                ("x-content-type-options", "nosniff"),
                ("x-frame-options", "DENY"),
                ("x-robots-tag", "noindex, all"),
            ])
        );
        assert_eq!(
            headers_for(&rules, "/static/styles.css"),
            pairs(&[("access-control-allow-origin", "*"), ("x-robots-tag", "nosnippet, noindex, all")])
        );
        assert_eq!(
            headers_for(&rules, "/movies/alien"),
            pairs(&[
                ("access-control-allow-origin", "*"),
                ("x-movie-name", "You are watching \"alien\""),
                ("x-robots-tag", "noindex, all"),
            ])
        );
        // `! Name` removes a header a default or an earlier rule set.
        assert_eq!(headers_for(&rules, "/static/cat.jpg"), pairs(&[("x-robots-tag", "nosnippet, noindex, all")]));
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, words) in [
            ("  X-A: b\n", 1, "before any URL pattern"),
            ("/a\n  nonsense\n", 2, "Name: value"),
            ("/a\n  Bad Name: x\n", 2, "header name"),
            ("not-a-path\n", 1, "URL pattern"),
            ("/a\n  ! \n", 2, "header name"),
        ] {
            let error = parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.message.contains(words), "{text:?}: {error}");
        }
        let many: String = (0..=MAX_RULES).map(|i| format!("/p{i}\n  X-A: b\n")).collect();
        assert_eq!(parse(&many).expect_err("101 rules").line, 2 * MAX_RULES + 1);
    }
}
