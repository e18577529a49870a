//! The guest examples in `examples/`, built once per test process for `wasm32-wasip2`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The repository root (this crate lives in `<root>/testkit`).
///
/// Prefers the `CARGO_MANIFEST_DIR` that cargo and nextest set for the running test: with a
/// target directory shared between checkouts, this library may have been compiled from
/// another checkout, and its compile-time path would point there.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let manifest_dir = manifest_dir.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("guest"),
        None => repo_root().join("examples/target"),
    }
}

/// Builds every Rust example (once per process) and returns the path of `<name>.wasm`.
pub fn wasm(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(repo_root().join("examples/Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir())
            .status();
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("building the examples failed ({s})")),
            Err(e) => Err(format!("running cargo: {e}")),
        }
    });
    if let Err(e) = built {
        bail!("{e}");
    }
    let path = target_dir().join("wasm32-wasip2/release").join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

pub fn wasm_bytes(name: &str) -> Result<Vec<u8>> {
    let path = wasm(name)?;
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Builds `examples/python-hello` with componentize-py (once per process). `Ok(None)` when
/// componentize-py is not installed (`scripts/setup` installs it).
pub fn python_hello() -> Result<Option<Vec<u8>>> {
    static BUILT: OnceLock<Result<Option<PathBuf>, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let found = std::process::Command::new("componentize-py").arg("--version").output();
        if !matches!(found, Ok(ref out) if out.status.success()) {
            return Ok(None);
        }
        let out = target_dir().join("python-hello.wasm");
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let status = std::process::Command::new(repo_root().join("examples/python-hello/build.sh")).arg(&out).status();
        match status {
            Ok(s) if s.success() => Ok(Some(out)),
            Ok(s) => Err(format!("building python-hello failed ({s})")),
            Err(e) => Err(format!("running build.sh: {e}")),
        }
    });
    match built {
        Ok(Some(path)) => Ok(Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)),
        Ok(None) => Ok(None),
        Err(e) => bail!("{e}"),
    }
}
