//! Components on disk, by content hash: the source bytes (`<sha256>.wasm`) and the machine
//! code compiled for this node's engine (`<sha256>.cwasm`).
//!
//! A deployment's component is compiled once per node, when it arrives; a restarted node
//! maps the compiled file instead of compiling again. Files are written to a temporary name
//! and renamed, so a crash never leaves a half-written artifact under a real name. A compiled
//! file that the engine refuses (another wasmtime version, corruption) is rebuilt from source.

use super::engine::Compiler;
use super::RuntimeError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

pub struct ComponentCache {
    dir: PathBuf,
}

pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `hash` has the form of a content hash (64 lowercase hex digits). Anything else
/// never reaches a path: a hash is a file name here, and the cache maps compiled code.
pub fn is_content_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn checked(hash: &str) -> Result<(), RuntimeError> {
    if is_content_hash(hash) {
        Ok(())
    } else {
        Err(RuntimeError::Compile {
            hash: hash.chars().take(80).collect(),
            message: "a component hash is 64 lowercase hex digits".into(),
        })
    }
}

impl ComponentCache {
    pub fn open(dir: PathBuf) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(&dir)
            .map_err(|source| RuntimeError::Io { context: format!("creating {}", dir.display()), source })?;
        Ok(ComponentCache { dir })
    }

    pub fn has_source(&self, hash: &str) -> bool {
        is_content_hash(hash) && self.source_path(hash).is_file()
    }

    /// Stores a component's bytes after checking they hash to `hash`.
    pub fn store_source(&self, hash: &str, bytes: &[u8]) -> Result<(), RuntimeError> {
        checked(hash)?;
        let actual = content_hash(bytes);
        if actual != hash {
            return Err(RuntimeError::Compile {
                hash: hash.to_string(),
                message: format!("received bytes hash to {actual}"),
            });
        }
        write_atomically(&self.source_path(hash), bytes)
    }

    /// The compiled component, compiling and caching it first if needed. Blocking: call it
    /// from `spawn_blocking`.
    pub fn load(&self, engine: &Engine, compiler: &Compiler, hash: &str) -> Result<Component, RuntimeError> {
        checked(hash)?;
        let compiled = self.compiled_path(hash);
        if compiled.is_file() {
            match deserialize(engine, &compiled) {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(%hash, "cached compiled component refused, recompiling: {e}"),
            }
        }
        let source = std::fs::read(self.source_path(hash)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RuntimeError::ComponentMissing { hash: hash.to_string() },
            _ => RuntimeError::Io { context: format!("reading component {hash}"), source: e },
        })?;
        let started = std::time::Instant::now();
        let machine_code = compiler
            .precompile_component(&source)
            .map_err(|e| RuntimeError::Compile { hash: hash.to_string(), message: format!("{e:#}") })?;
        write_atomically(&compiled, &machine_code)?;
        drop(machine_code);
        super::release_free_heap();
        tracing::info!(%hash, elapsed_ms = started.elapsed().as_millis() as u64, "compiled component");
        deserialize(engine, &compiled)
            .map_err(|e| RuntimeError::Compile { hash: hash.to_string(), message: format!("{e:#}") })
    }

    fn source_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.wasm"))
    }

    fn compiled_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.cwasm"))
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was produced by `Engine::precompile_component` of this node and written
    // atomically into the node's private data directory; wasmtime checks that it matches the
    // engine's version and configuration before using it.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let io = |source| RuntimeError::Io { context: format!("writing {}", path.display()), source };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
