//! The worker manifest: everything a deployment says about a worker besides its component.
//!
//! The CLI builds it from `nimbus.toml`, the control plane validates and stores it with each
//! version, and every node runs the worker by it. Unknown fields and unknown binding types are
//! errors (`deny_unknown_fields`), so a typo never deploys silently.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest worker name, as Cloudflare (63, a DNS label).
pub const MAX_WORKER_NAME: usize = 63;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerManifest {
    /// Extra routes besides `<name>.<suffix>`: `example.com/*`, `example.com/api/*`, `/path/*`.
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub isolation: Isolation,
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Plain-text variables (`[vars]`), given to the guest as environment-free bindings later.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Hosts the worker may reach with outbound `fetch` (`api.example.com`, `*.example.com`,
    /// `127.0.0.1:8080`, or `*` for any). Empty: no outbound HTTP at all.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// The queues this worker consumes (`[[queues.consumers]]`), with Cloudflare's settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue_consumers: Vec<QueueConsumer>,
    /// Cron Triggers (`[triggers] crons`): Cloudflare's five-field expressions, UTC, checked
    /// by [`crate::cron`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crons: Vec<String>,
}

/// A `[[queues.consumers]]` entry: Cloudflare's names, units and defaults (seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConsumer {
    pub queue: String,
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: u32,
    #[serde(default = "default_max_batch_timeout")]
    pub max_batch_timeout: u32,
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    #[serde(default)]
    pub retry_delay: u32,
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
}

fn default_max_batch_size() -> u32 {
    10
}
fn default_max_batch_timeout() -> u32 {
    5
}
fn default_max_retries() -> u32 {
    3
}
fn default_max_concurrency() -> u32 {
    10
}

/// A queue name: 1-63 lowercase letters, digits, `-` or `_`, starting with a letter or digit.
pub fn validate_queue_name(name: &str) -> Result<(), ManifestError> {
    let bytes = name.as_bytes();
    let ok = (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
        && bytes[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ManifestError(format!(
            "queue name `{name}` must be 1-63 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
        )))
    }
}

/// How instances of a worker are reused between requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// A warm pool of instances, each serving one request at a time and then reused,
    /// as Cloudflare reuses an isolate: globals persist between requests.
    #[default]
    Pool,
    /// A fresh instance for every request (nothing survives a request).
    Request,
}

/// Per-request limits; `None` means the node's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPU time a request may spend executing guest code, in milliseconds.
    pub cpu_ms: Option<u64>,
    /// Linear memory an instance may grow to, in MiB.
    pub memory_mb: Option<u64>,
    /// Largest request body accepted, in bytes.
    pub max_request_body: Option<u64>,
    /// Largest response body sent, in bytes.
    pub max_response_body: Option<u64>,
}

impl Limits {
    /// Refuses a limit above the operator's ceiling (`None` there: no ceiling), naming it.
    pub fn within(&self, ceilings: &Limits) -> Result<(), ManifestError> {
        let pairs = [
            ("cpu_ms", self.cpu_ms, ceilings.cpu_ms),
            ("memory_mb", self.memory_mb, ceilings.memory_mb),
            ("max_request_body", self.max_request_body, ceilings.max_request_body),
            ("max_response_body", self.max_response_body, ceilings.max_response_body),
        ];
        for (name, asked, ceiling) in pairs {
            if let (Some(asked), Some(ceiling)) = (asked, ceiling) {
                if asked > ceiling {
                    return Err(ManifestError(format!(
                        "limits.{name} = {asked} is over this cluster's ceiling of {ceiling}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A binding gives the worker a named handle to a platform resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Binding {
    Kv {
        name: String,
        namespace_id: String,
    },
    D1 {
        name: String,
        database_name: String,
    },
    DurableObject {
        name: String,
        class_name: String,
    },
    /// An R2 bucket (`[[r2_buckets]] binding, bucket_name`).
    R2 {
        name: String,
        bucket_name: String,
    },
    /// A queue producer (`[[queues.producers]] binding, queue`).
    Queue {
        name: String,
        queue: String,
    },
}

impl Binding {
    pub fn name(&self) -> &str {
        match self {
            Binding::Kv { name, .. }
            | Binding::D1 { name, .. }
            | Binding::DurableObject { name, .. }
            | Binding::R2 { name, .. }
            | Binding::Queue { name, .. } => name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Binding::Kv { .. } => "kv",
            Binding::D1 { .. } => "d1",
            Binding::DurableObject { .. } => "durable_object",
            Binding::R2 { .. } => "r2",
            Binding::Queue { .. } => "queue",
        }
    }
}

impl WorkerManifest {
    /// The Durable Object classes this worker binds (and so must export).
    pub fn durable_object_classes(&self) -> Vec<&str> {
        self.bindings
            .iter()
            .filter_map(|b| match b {
                Binding::DurableObject { class_name, .. } => Some(class_name.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// What is wrong with a manifest, worded for the person who wrote `nimbus.toml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

impl WorkerManifest {
    /// Checks what serde cannot: names, routes, limits.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let mut seen = std::collections::BTreeSet::new();
        for binding in &self.bindings {
            let name = binding.name();
            if !is_identifier(name) {
                return Err(ManifestError(format!(
                    "binding name `{name}` must start with a letter or `_` and hold only letters, digits and `_`"
                )));
            }
            if !seen.insert(name) {
                return Err(ManifestError(format!("binding name `{name}` is declared twice")));
            }
            match binding {
                Binding::Kv { namespace_id, .. } => validate_kv_namespace_id(namespace_id)?,
                Binding::R2 { bucket_name, .. } => validate_bucket_name(bucket_name)?,
                Binding::Queue { queue, .. } => validate_queue_name(queue)?,
                Binding::D1 { .. } | Binding::DurableObject { .. } => {}
            }
        }
        for route in &self.routes {
            validate_route(route).map_err(ManifestError)?;
        }
        let mut consumed = std::collections::BTreeSet::new();
        for consumer in &self.queue_consumers {
            validate_queue_name(&consumer.queue)?;
            if !consumed.insert(&consumer.queue) {
                return Err(ManifestError(format!("queue `{}` is consumed twice", consumer.queue)));
            }
            if let Some(dlq) = &consumer.dead_letter_queue {
                validate_queue_name(dlq)?;
                if dlq == &consumer.queue {
                    return Err(ManifestError(format!("queue `{dlq}` cannot be its own dead-letter queue")));
                }
            }
            let bounds: [(&str, u32, std::ops::RangeInclusive<u32>); 5] = [
                ("max_batch_size", consumer.max_batch_size, 1..=100),
                ("max_batch_timeout", consumer.max_batch_timeout, 0..=60),
                ("max_retries", consumer.max_retries, 0..=100),
                ("retry_delay", consumer.retry_delay, 0..=43_200),
                ("max_concurrency", consumer.max_concurrency, 1..=250),
            ];
            for (field, value, range) in bounds {
                if !range.contains(&value) {
                    return Err(ManifestError(format!(
                        "queue consumer `{}`: {field} = {value} is outside {}..={}",
                        consumer.queue,
                        range.start(),
                        range.end()
                    )));
                }
            }
        }
        for cron in &self.crons {
            crate::cron::Schedule::parse(cron).map_err(|e| ManifestError(format!("[triggers] crons: {e}")))?;
        }
        if self.crons.len() > 10 {
            return Err(ManifestError(format!(
                "a worker has at most 10 cron triggers; this one has {}",
                self.crons.len()
            )));
        }
        for host in &self.allowed_outbound_hosts {
            if host.is_empty() || host.contains('/') {
                return Err(ManifestError(format!(
                    "allowed_outbound_hosts entry `{host}` must be a host or host:port, without scheme or path"
                )));
            }
        }
        let limits = &self.limits;
        if limits.cpu_ms == Some(0) {
            return Err(ManifestError("limits.cpu_ms must be at least 1".into()));
        }
        if let Some(mb) = limits.memory_mb {
            if !(1..=4096).contains(&mb) {
                return Err(ManifestError(format!("limits.memory_mb = {mb} is outside 1..=4096")));
            }
        }
        Ok(())
    }
}

/// A worker name: lowercase letters, digits and `-`, as a DNS label.
pub fn validate_worker_name(name: &str) -> Result<(), ManifestError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_WORKER_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ManifestError(format!(
            "worker name `{name}` must be 1-{MAX_WORKER_NAME} lowercase letters, digits or `-`, not starting or ending with `-`"
        )))
    }
}

/// An R2 bucket name, by R2's rule: 3-63 lowercase letters, digits and `-`, starting and
/// ending with a letter or digit (the bucket itself is created with `nimbus r2 bucket create`).
pub fn validate_bucket_name(name: &str) -> Result<(), ManifestError> {
    let bytes = name.as_bytes();
    let ok = (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(|b| *b != b'-')
        && bytes.last().is_some_and(|b| *b != b'-');
    if ok {
        Ok(())
    } else {
        Err(ManifestError(format!(
            "R2 bucket name `{name}` must be 3-63 lowercase letters, digits or `-`, starting and ending with a letter or digit"
        )))
    }
}

/// Longest KV namespace id.
pub const MAX_KV_NAMESPACE: usize = 64;

/// A KV namespace id: 1-64 of `A-Z a-z 0-9 - _ .`, not starting with `__` (reserved for the
/// platform) and not `namespaces` (a path of the REST API).
pub fn validate_kv_namespace_id(id: &str) -> Result<(), ManifestError> {
    let valid_chars = id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if id.is_empty() || id.len() > MAX_KV_NAMESPACE || !valid_chars || id.starts_with("__") || id == "namespaces" {
        return Err(ManifestError(format!(
            "KV namespace id `{id}` must be 1-{MAX_KV_NAMESPACE} of A-Z a-z 0-9 - _ . (not starting with `__`, not `namespaces`)"
        )));
    }
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A route is `host/path`, `host/path*` or `/path*`: an optional host (which may start with
/// `*.`), then a path that starts with `/`; a trailing `*` matches any rest.
fn validate_route(route: &str) -> Result<(), String> {
    let (host, path) = match route.find('/') {
        Some(i) => route.split_at(i),
        None => return Err(format!("route `{route}` needs a path, e.g. `{route}/*`")),
    };
    if host.contains("://") || route.contains("://") {
        return Err(format!("route `{route}` must not include a scheme"));
    }
    if host.contains('*') && !host.starts_with("*.") {
        return Err(format!("route `{route}`: a wildcard host must start with `*.`"));
    }
    if path.strip_suffix('*').unwrap_or(path).contains('*') {
        return Err(format!("route `{route}`: `*` is only allowed at the end of the path"));
    }
    // A route for any host must leave the edge's own paths alone.
    if host.is_empty() {
        let prefix = path.strip_suffix('*');
        for platform in PLATFORM_PATHS {
            let claims = match prefix {
                Some(prefix) => platform.starts_with(prefix),
                None => path == *platform,
            };
            if claims {
                return Err(format!(
                    "route `{route}` would claim `{platform}`, a path the edge serves itself; give the route a host (`example.com{path}`) or a narrower path"
                ));
            }
        }
    }
    Ok(())
}

/// Paths the public edge answers itself, under any host no worker claims.
pub const PLATFORM_PATHS: &[&str] = &["/healthz"];

/// The same route as another, up to the case of its host (`Example.com/*` is `example.com/*`).
pub fn route_key(route: &str) -> String {
    match route.find('/') {
        Some(i) => format!("{}{}", route[..i].to_ascii_lowercase(), &route[i..]),
        None => route.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_binding_type_is_rejected_with_its_name() {
        let err = serde_json::from_str::<WorkerManifest>(r#"{"bindings":[{"type":"r3","name":"X","bucket":"b"}]}"#)
            .expect_err("r3 is not a binding type");
        assert!(err.to_string().contains("unknown variant `r3`"), "{err}");
    }

    #[test]
    fn duplicate_binding_names_are_rejected() {
        let manifest = WorkerManifest {
            bindings: vec![
                Binding::Kv { name: "CACHE".into(), namespace_id: "a".into() },
                Binding::D1 { name: "CACHE".into(), database_name: "b".into() },
            ],
            ..Default::default()
        };
        let err = manifest.validate().expect_err("duplicate");
        assert!(err.0.contains("declared twice"), "{}", err.0);
    }

    #[test]
    fn r2_bindings_name_a_valid_bucket() {
        let manifest = |bucket: &str| WorkerManifest {
            bindings: vec![Binding::R2 { name: "MEDIA".into(), bucket_name: bucket.into() }],
            ..Default::default()
        };
        assert!(manifest("media-2026").validate().is_ok());
        for bad in ["Media", "ab", "-media", "media-", "me_dia", &"m".repeat(64)] {
            let err = manifest(bad).validate().expect_err(bad);
            assert!(err.0.contains("R2 bucket name"), "{}", err.0);
        }
        let json = r#"{"bindings":[{"type":"r2","name":"MEDIA","bucket_name":"media"}]}"#;
        let parsed: WorkerManifest = serde_json::from_str(json).expect("r2 binding");
        assert_eq!(parsed.bindings[0].kind(), "r2");
    }

    #[test]
    fn limits_over_a_ceiling_are_named() {
        let ceilings = Limits { cpu_ms: Some(100), memory_mb: Some(256), ..Default::default() };
        assert!(Limits { cpu_ms: Some(100), ..Default::default() }.within(&ceilings).is_ok());
        let err = Limits { memory_mb: Some(512), ..Default::default() }.within(&ceilings).expect_err("over");
        assert!(err.0.contains("limits.memory_mb = 512") && err.0.contains("256"), "{}", err.0);
        assert!(Limits { max_request_body: Some(u64::MAX), ..Default::default() }.within(&ceilings).is_ok());
    }

    /// Found by `scripts/fuzz` (target `manifest`): a path ending in a multi-byte character
    /// was sliced inside it, and the deploy's handler panicked.
    #[test]
    fn a_route_ending_in_a_multibyte_character_is_checked_not_a_panic() {
        let manifest = |route: &str| WorkerManifest { routes: vec![route.into()], ..Default::default() };
        assert!(manifest("/\u{615}").validate().is_ok());
        assert!(manifest("example.com/caf\u{e9}").validate().is_ok());
        assert!(manifest("example.com/\u{e9}*\u{e9}").validate().is_err(), "`*` only at the end");
    }

    #[test]
    fn routes_are_checked() {
        for good in
            ["example.com/*", "example.com/api/*", "/static/*", "*.example.com/x", "example.com/healthz", "/health"]
        {
            assert!(validate_route(good).is_ok(), "{good}");
        }
        for bad in
            ["example.com", "https://example.com/*", "exa*mple.com/*", "example.com/*/x", "/*", "/h*", "/healthz"]
        {
            assert!(validate_route(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn worker_names_are_dns_labels() {
        assert!(validate_worker_name("hello-world2").is_ok());
        for bad in ["", "Hello", "-x", "x-", "a_b", &"a".repeat(64)] {
            assert!(validate_worker_name(bad).is_err(), "{bad}");
        }
    }
}
