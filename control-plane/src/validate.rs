//! Deploy-time checks of a component: is it a valid component, does it serve HTTP, and does
//! it import only what a Nimbus node provides.
//!
//! Each failure says precisely what is wrong, so `nimbus deploy` can print it as is; nothing
//! is stored when a check fails.

use crate::error::ControlPlaneError;
use wasmparser::{Parser, Payload, Validator, WasmFeatures};

/// The export every worker must provide (any 0.2.x version).
const HTTP_HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// Interfaces a node provides to guests besides WASI 0.2.
const NIMBUS_INTERFACES: [&str; 9] =
    ["types", "console", "kv", "d1", "durable-objects", "storage", "websocket", "r2", "queue"];
/// What a worker that defines Durable Object classes exports.
pub const DURABLE_OBJECT_HANDLER: &str = "nimbus:worker/durable-object@0.1";
/// What a queue consumer exports.
pub const QUEUE_HANDLER: &str = "nimbus:worker/queue-handler@0.1";
/// What a worker with Cron Triggers exports.
pub const SCHEDULED_HANDLER: &str = "nimbus:worker/scheduled-handler@0.1";
const WASI_PACKAGES: [&str; 7] = ["cli", "clocks", "filesystem", "http", "io", "random", "sockets"];

/// What the checks learned about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

pub fn validate_component(bytes: &[u8]) -> Result<ComponentInfo, ControlPlaneError> {
    let invalid = |msg: String| Err(ControlPlaneError::Invalid(msg));
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return invalid(format!("not a WebAssembly binary: {} bytes without the `\\0asm` header", bytes.len()));
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return invalid(
            "this is a core WebAssembly module, not a component: build for `wasm32-wasip2`, or wrap it with `wasm-tools component new`"
                .into(),
        );
    }
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| ControlPlaneError::Invalid(format!("invalid component: {e}")))?;

    let info = top_level_names(bytes)?;
    if !info.exports.iter().any(|e| e.starts_with(HTTP_HANDLER)) {
        return invalid(format!(
            "the component exports neither `wasi:http/incoming-handler` nor a Nimbus handler (it exports: {})",
            list_or_none(&info.exports)
        ));
    }
    let unknown: Vec<&String> = info.imports.iter().filter(|i| !is_provided(i)).collect();
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.iter().map(|s| format!("`{s}`")).collect();
        return invalid(format!(
            "the component imports {}, which Nimbus does not provide (available: WASI 0.2 and nimbus:worker/{{{}}}@0.1)",
            names.join(", "),
            NIMBUS_INTERFACES.join(",")
        ));
    }
    Ok(info)
}

/// Import and export names of the outermost component (nested modules and components skipped).
fn top_level_names(bytes: &[u8]) -> Result<ComponentInfo, ControlPlaneError> {
    let mut info = ComponentInfo { imports: Vec::new(), exports: Vec::new() };
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| ControlPlaneError::Invalid(format!("invalid component: {e}")))?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| ControlPlaneError::Invalid(format!("invalid import: {e}")))?;
                    info.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| ControlPlaneError::Invalid(format!("invalid export: {e}")))?;
                    info.exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

fn is_provided(import: &str) -> bool {
    let Some((package, rest)) = import.split_once('/') else {
        return false;
    };
    let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("");
    let interface = rest.split_once('@').map_or(rest, |(i, _)| i);
    match package.split_once(':') {
        Some(("wasi", name)) => WASI_PACKAGES.contains(&name) && version.starts_with("0.2"),
        Some(("nimbus", "worker")) => NIMBUS_INTERFACES.contains(&interface) && version.starts_with("0.1"),
        _ => false,
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<ComponentInfo, ControlPlaneError>) -> String {
        match result {
            Err(ControlPlaneError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn garbage_and_core_modules_are_named_as_such() {
        assert!(message(validate_component(b"hello world")).contains("not a WebAssembly binary"));
        let core = b"\0asm\x01\0\0\0";
        assert!(message(validate_component(core)).contains("core WebAssembly module"));
    }

    #[test]
    fn a_truncated_component_is_invalid() {
        // The preamble of a component followed by a section that ends early.
        let truncated = b"\0asm\x0d\0\x01\0\x07\x10\x01";
        assert!(message(validate_component(truncated)).starts_with("invalid component"));
    }

    #[test]
    fn an_empty_component_has_no_http_handler() {
        let empty = b"\0asm\x0d\0\x01\0";
        let msg = message(validate_component(empty));
        assert!(msg.contains("exports neither"), "{msg}");
        assert!(msg.contains("nothing"), "{msg}");
    }

    #[test]
    fn provided_interfaces() {
        assert!(is_provided("wasi:http/types@0.2.12"));
        assert!(is_provided("wasi:cli/environment@0.2.0"));
        assert!(is_provided("nimbus:worker/kv@0.1.0"));
        assert!(is_provided("nimbus:worker/r2@0.1.0"));
        assert!(!is_provided("nimbus:worker/r3@0.1.0"));
        assert!(!is_provided("wasi:http/types@0.3.0"));
        assert!(!is_provided("acme:secret/backdoor@1.0.0"));
        assert!(!is_provided("plain-name"));
    }
}
