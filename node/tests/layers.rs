//! The layering rules Cargo cannot check by itself.
//!
//! Crate dependencies already stop an upward import from compiling (see `ARCHITECTURE.md`).
//! What they do not stop is a crate taking a dependency that belongs to another layer: a
//! store reaching for wasmtime, the runtime serving HTTP with axum, two sibling stores
//! depending on each other. This test reads the workspace's declared dependencies with
//! `cargo metadata` and fails, naming the rule, when one of them breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// The node's layers, bottom first. A crate may depend on crates of lower layers only; crates
/// of one layer are siblings and never depend on each other.
const LAYERS: &[&[&str]] = &[
    &["nimbus-proto", "nimbus-api"],
    &["nimbus-util", "nimbus-wasm", "nimbus-http", "nimbus-pages"],
    &["nimbus-storage"],
    &["nimbus-cluster"],
    &["nimbus-kv", "nimbus-d1", "nimbus-durable", "nimbus-r2", "nimbus-queues"],
    &["nimbus-runtime"],
    &["nimbus-node"],
];

/// External crates that belong to one layer: only the crates listed may depend on them.
const OWNED: &[(&str, &[&str])] = &[
    // The HTTP edge is the node's: no subsystem serves HTTP itself. (nimbus-http is the accept
    // loop the node and the control plane share; nimbus-wasm uses hyper-util's I/O adapter
    // for the outbound client, which connects to checked addresses.)
    ("axum", &["nimbus-node", "nimbus-control-plane", "nimbus-http"]),
    ("hyper-util", &["nimbus-node", "nimbus-control-plane", "nimbus-wasm", "nimbus-http"]),
    // Only the runtime (and the control plane's deploy-time checks) run WebAssembly.
    ("wasmtime", &["nimbus-wasm", "nimbus-runtime", "nimbus-control-plane"]),
    ("wasmtime-wasi", &["nimbus-runtime", "nimbus-control-plane"]),
    ("wasmtime-wasi-http", &["nimbus-wasm", "nimbus-runtime", "nimbus-control-plane"]),
    // RocksDB sits behind the storage crate.
    ("rocksdb", &["nimbus-storage"]),
    // SQLite and Raft are D1's (the control plane keeps its own SQLite store).
    // (R2's metadata and Queues' state are SQLite files the D1 group's log feeds.)
    ("rusqlite", &["nimbus-d1", "nimbus-r2", "nimbus-queues", "nimbus-control-plane"]),
    ("openraft", &["nimbus-d1"]),
    // Gossip is the cluster layer's.
    ("foca", &["nimbus-cluster"]),
];

/// (package, its normal dependencies) for every workspace member.
fn workspace() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("name").to_owned();
            let dependencies = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                // Dev-dependencies may reach across (a test may start a whole node).
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("dependency name").to_owned())
                .collect();
            (name, dependencies)
        })
        .collect()
}

fn layer_of(name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&name))
}

#[test]
fn node_crates_depend_only_on_lower_layers() {
    let workspace = workspace();
    let mut broken = Vec::new();
    for layer in LAYERS {
        for name in *layer {
            let Some(dependencies) = workspace.get(*name) else {
                broken.push(format!("{name} is in LAYERS but not in the workspace"));
                continue;
            };
            let own = layer_of(name).unwrap_or(usize::MAX);
            for dependency in dependencies {
                if let Some(theirs) = layer_of(dependency) {
                    if theirs >= own {
                        broken.push(format!("{name} depends on {dependency}, which is not in a lower layer"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn layer_owned_dependencies_stay_in_their_layer() {
    let workspace = workspace();
    let mut broken = Vec::new();
    for (name, dependencies) in &workspace {
        for (owned, owners) in OWNED {
            if dependencies.contains(*owned) && !owners.contains(&name.as_str()) {
                broken.push(format!("{name} depends on {owned}, which only {} may use", owners.join(", ")));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn nothing_depends_on_the_node_library() {
    let workspace = workspace();
    let dependents: Vec<&String> = workspace
        .iter()
        .filter(|(_, dependencies)| dependencies.contains("nimbus-node"))
        .map(|(name, _)| name)
        .collect();
    assert!(dependents.is_empty(), "the node crate is the top layer, yet {dependents:?} depend on it");
}
