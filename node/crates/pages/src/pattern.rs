//! The patterns of `_redirects`, `_headers` and `_routes.json`: a path where `*` matches any
//! rest (slashes included) and is named `splat`, and `:name` matches one segment (no `/`).
//! A literal part matches itself exactly.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `:name`: one segment.
    Placeholder(String),
    /// `*`: anything.
    Splat,
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    parts: Vec<Part>,
}

/// What a match captured: placeholders by name, and `splat`.
pub type Captures = BTreeMap<String, String>;

impl Pattern {
    /// Parses `source`; `placeholders` says whether `:name` is special (it is not in
    /// `_routes.json`).
    pub fn parse(source: &str, placeholders: bool) -> Pattern {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            match c {
                '*' => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Splat);
                }
                ':' if placeholders && starts_name(&mut chars) => {
                    let name = take_name(&mut chars);
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Placeholder(name));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Pattern { source: source.to_owned(), parts }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the pattern has a `*` or a `:placeholder` (a "dynamic" rule).
    pub fn is_dynamic(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    pub fn splats(&self) -> usize {
        self.parts.iter().filter(|p| matches!(p, Part::Splat)).count()
    }

    /// The placeholders' names, in order.
    pub fn placeholders(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Placeholder(name) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Matches the whole of `path`; the captures if it does.
    pub fn matches(&self, path: &str) -> Option<Captures> {
        let mut captures = Captures::new();
        if match_from(&self.parts, path, &mut captures) {
            Some(captures)
        } else {
            None
        }
    }
}

fn match_from(parts: &[Part], rest: &str, captures: &mut Captures) -> bool {
    let Some((first, others)) = parts.split_first() else { return rest.is_empty() };
    match first {
        Part::Literal(literal) => rest.strip_prefix(literal.as_str()).is_some_and(|r| match_from(others, r, captures)),
        Part::Placeholder(name) => {
            // One segment, at least one character; try the longest first.
            let segment = rest.find('/').unwrap_or(rest.len());
            for end in (1..=segment).rev() {
                if !rest.is_char_boundary(end) {
                    continue;
                }
                if match_from(others, &rest[end..], captures) {
                    captures.insert(name.clone(), rest[..end].to_owned());
                    return true;
                }
            }
            false
        }
        Part::Splat => {
            for end in (0..=rest.len()).rev() {
                if !rest.is_char_boundary(end) {
                    continue;
                }
                if match_from(others, &rest[end..], captures) {
                    captures.insert("splat".into(), rest[..end].to_owned());
                    return true;
                }
            }
            false
        }
    }
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

/// Whether a `:` just read starts a `:name` (a letter follows).
fn starts_name(chars: &mut Chars<'_>) -> bool {
    chars.peek().is_some_and(|(_, n)| n.is_ascii_alphabetic())
}

/// The name after a `:`: letters, digits and `_`.
fn take_name(chars: &mut Chars<'_>) -> String {
    let mut name = String::new();
    while let Some((_, n)) = chars.peek().filter(|(_, n)| n.is_ascii_alphanumeric() || *n == '_') {
        name.push(*n);
        chars.next();
    }
    name
}

/// The `:name`s `template` uses, in order (`:splat` included).
pub fn names_in(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = template.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == ':' && starts_name(&mut chars) {
            names.push(take_name(&mut chars));
        }
    }
    names
}

/// `template` with `:name` replaced by its capture (and `:splat` by the splat); names without
/// a capture are left as written.
pub fn substitute(template: &str, captures: &Captures) -> String {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == ':' && starts_name(&mut chars) {
            let name = take_name(&mut chars);
            match captures.get(&name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push(':');
                    out.push_str(&name);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splats_and_placeholders() {
        let p = Pattern::parse("/news/:year/:month/*", true);
        let c = p.matches("/news/2024/05/a/b.html").expect("matches");
        assert_eq!((c["year"].as_str(), c["month"].as_str(), c["splat"].as_str()), ("2024", "05", "a/b.html"));
        assert!(p.matches("/news/2024").is_none());
        assert!(Pattern::parse("/a/:b", true).matches("/a/x/y").is_none(), "a placeholder is one segment");
        assert_eq!(Pattern::parse("/*", true).matches("/").expect("empty splat")["splat"], "");
        assert!(Pattern::parse("/exact", true).matches("/exact/").is_none());
        assert_eq!(substitute("/blog/:year/:splat?ref=:missing", &c), "/blog/2024/a/b.html?ref=:missing");
        assert!(Pattern::parse("/api/*", false).is_dynamic());
        assert!(!Pattern::parse("/a:b", false).is_dynamic(), "no placeholders in _routes.json");
    }
}
