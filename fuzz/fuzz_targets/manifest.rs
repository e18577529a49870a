//! The worker manifest as the control plane takes it (JSON) and the CLI reads it (TOML):
//! parsing and validation never panic, and a manifest that validates survives a round trip
//! unchanged and gives every route a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_proto::manifest::{route_key, WorkerManifest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = [serde_json::from_str::<WorkerManifest>(text).ok(), toml::from_str::<WorkerManifest>(text).ok()];
    for manifest in parsed.into_iter().flatten() {
        if manifest.validate().is_err() {
            continue;
        }
        for route in &manifest.routes {
            let _ = route_key(route);
        }
        let _ = manifest.durable_object_classes();
        let json = serde_json::to_string(&manifest).expect("a manifest serializes");
        let back: WorkerManifest = serde_json::from_str(&json).expect("a valid manifest reads back");
        assert_eq!(back, manifest, "a manifest changed on a round trip");
        assert!(back.validate().is_ok());
    }
});
