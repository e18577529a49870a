//! JavaScript workers: the ES modules `main` reaches through relative imports, read from the
//! project for upload.
//!
//! Nothing is transformed: the control plane's engine parses the modules as they are, so a
//! syntax error points at the line and column of the file the user wrote. Specifiers are
//! found by a light scan (`import … from "…"`, `export … from "…"`, `import "…"`,
//! `import("…")`); only relative ones (`./`, `../`) name files of the bundle, and a scanned
//! name without a file behind it (say, inside a comment) is left for the engine to report if
//! it is really imported. Bare specifiers (`npm` packages) must be bundled beforehand.

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Largest total of module sources uploaded.
const MAX_BUNDLE_BYTES: u64 = 32 << 20;

#[derive(Debug, Serialize)]
pub struct Script {
    pub main: String,
    pub modules: Vec<Module>,
}

#[derive(Debug, Serialize)]
pub struct Module {
    pub name: String,
    pub source: String,
}

/// True when `main` names a JavaScript or TypeScript module rather than a component.
pub fn is_script(main: &Path) -> bool {
    matches!(main.extension().and_then(|e| e.to_str()), Some("js" | "mjs" | "ts" | "mts"))
}

/// `main` and every module it imports, named by their paths relative to `root`.
pub fn collect(root: &Path, main: &Path) -> Result<Script> {
    let root = root.canonicalize().with_context(|| format!("the project directory {}", root.display()))?;
    let main = main.canonicalize().with_context(|| format!("field `main`: cannot read {}", main.display()))?;
    let main_name = module_name(&root, &main)?;
    let mut modules = BTreeMap::new();
    let mut pending = vec![main];
    let mut total = 0u64;
    while let Some(path) = pending.pop() {
        let name = module_name(&root, &path)?;
        if modules.contains_key(&name) {
            continue;
        }
        let source = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        total += source.len() as u64;
        if total > MAX_BUNDLE_BYTES {
            bail!("the modules add up to more than {} MiB", MAX_BUNDLE_BYTES >> 20);
        }
        let dir = path.parent().unwrap_or(&root).to_path_buf();
        for specifier in specifiers(&source) {
            if let Some(found) = resolve(&dir, &specifier) {
                pending.push(found);
            }
        }
        modules.insert(name, source);
    }
    Ok(Script { main: main_name, modules: modules.into_iter().map(|(name, source)| Module { name, source }).collect() })
}

fn module_name(root: &Path, path: &Path) -> Result<String> {
    let relative = path.strip_prefix(root).map_err(|_| {
        anyhow::anyhow!("{} is outside the project directory {}: move it inside", path.display(), root.display())
    })?;
    let parts: Vec<String> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    Ok(parts.join("/"))
}

/// The file a relative specifier names, trying what the engine tries: `.js`, `.mjs`, and
/// TypeScript's `.ts`, `.mts`, `x.js` meaning `x.ts`, and `index` files.
fn resolve(dir: &Path, specifier: &str) -> Option<PathBuf> {
    if !(specifier.starts_with("./") || specifier.starts_with("../")) {
        return None;
    }
    let base = dir.join(specifier);
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", base.display()));
    let stem = specifier.strip_suffix(".js").map(|s| PathBuf::from(format!("{}.ts", dir.join(s).display())));
    [base.clone(), with(".js"), with(".mjs"), with(".ts"), with(".mts")]
        .into_iter()
        .chain(stem)
        .chain([base.join("index.ts"), base.join("index.js")])
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
}

/// Module specifiers after `from`, `import` and `import(`.
fn specifiers(source: &str) -> Vec<String> {
    let bytes = source.as_bytes();
    let mut found = Vec::new();
    for keyword in ["from", "import"] {
        let mut at = 0;
        while let Some(offset) = source[at..].find(keyword) {
            let start = at + offset;
            at = start + keyword.len();
            let boundary_before = start == 0 || !is_ident(bytes[start - 1]);
            let boundary_after = at >= bytes.len() || !is_ident(bytes[at]);
            if !(boundary_before && boundary_after) {
                continue;
            }
            let mut i = at;
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'(') {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                if let Some(len) = bytes[i + 1..].iter().position(|&b| b == quote || b == b'\n') {
                    if bytes[i + 1 + len] == quote {
                        found.push(source[i + 1..i + 1 + len].to_string());
                    }
                }
            }
        }
    }
    found
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifiers_are_found_in_every_import_form() {
        let source = r#"
            import a from "./a.js";
            import { b } from './b';
            export * from "./c.mjs";
            import "./side-effect.js";
            const d = await import("./d.js");
            import { DurableObject } from "cloudflare:workers";
            const important = "not an import";
        "#;
        let found = specifiers(source);
        for expected in ["./a.js", "./b", "./c.mjs", "./side-effect.js", "./d.js", "cloudflare:workers"] {
            assert!(found.iter().any(|f| f == expected), "{expected} missing from {found:?}");
        }
        assert!(!found.iter().any(|f| f == "not an import"));
    }

    #[test]
    fn a_project_is_collected_with_relative_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("src/lib")).expect("mkdir");
        std::fs::write(dir.path().join("src/index.js"), "import { x } from './lib/x';\nexport default {};\n")
            .expect("write");
        std::fs::write(dir.path().join("src/lib/x.js"), "import '../index.js';\nexport const x = 1;\n").expect("write");
        std::fs::write(dir.path().join("src/unused.js"), "export const y = 2;\n").expect("write");
        let script = collect(dir.path(), &dir.path().join("src/index.js")).expect("collects");
        assert_eq!(script.main, "src/index.js");
        let names: Vec<&str> = script.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["src/index.js", "src/lib/x.js"]);
    }
}
