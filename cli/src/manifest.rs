//! `nimbus.toml`: a wrangler.toml-like description of one worker.
//!
//! ```toml
//! name = "hello"
//! main = "target/wasm32-wasip2/release/hello.wasm"   # the component to deploy, or
//!                                                     # "src/index.js" (an ES module worker)
//! routes = ["example.com/*"]
//! isolation = "pool"                                  # or "request"
//! allowed_outbound_hosts = ["api.example.com"]
//!
//! [build]
//! command = "cargo build --release --target wasm32-wasip2"
//!
//! [limits]
//! cpu_ms = 50
//! memory_mb = 128
//!
//! [vars]
//! GREETING = "hi"
//!
//! [[kv_namespaces]]
//! binding = "CACHE"
//! id = "cache"
//!
//! [[d1_databases]]
//! binding = "DB"
//! database_name = "notes"
//!
//! [[durable_objects.bindings]]
//! name = "COUNTER"
//! class_name = "Counter"
//!
//! [[queues.producers]]
//! binding = "EMAIL_QUEUE"
//! queue = "emails"
//!
//! [[queues.consumers]]
//! queue = "emails"
//! max_batch_size = 10          # Cloudflare's names and defaults
//! dead_letter_queue = "emails-dlq"
//!
//! [triggers]
//! crons = ["*/5 * * * *", "0 18 * * 6L"]
//! ```
//!
//! Errors name the file, and the line and field at fault.

use anyhow::{bail, Context, Result};
use nimbus_proto::manifest::{validate_worker_name, Binding, Isolation, Limits, QueueConsumer, WorkerManifest};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NimbusToml {
    /// A worker's name (for Pages, the project's, and optional).
    #[serde(default)]
    name: String,
    /// A worker's component or main module (Pages has none).
    #[serde(default)]
    main: String,
    /// Wrangler's Pages key: the output directory (accepted; `nimbus pages deploy` takes it
    /// as an argument).
    #[serde(default)]
    #[allow(dead_code)]
    pages_build_output_dir: Option<String>,
    /// Accepted for wrangler compatibility; Nimbus has one runtime version.
    #[serde(default)]
    #[allow(dead_code)]
    compatibility_date: Option<String>,
    #[serde(default)]
    routes: Vec<RouteEntry>,
    #[serde(default)]
    build: Option<BuildToml>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    isolation: Isolation,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    kv_namespaces: Vec<KvToml>,
    #[serde(default)]
    d1_databases: Vec<D1Toml>,
    #[serde(default)]
    durable_objects: Option<DurableObjectsToml>,
    #[serde(default)]
    r2_buckets: Vec<R2Toml>,
    #[serde(default)]
    queues: Option<QueuesToml>,
    #[serde(default)]
    triggers: Option<TriggersToml>,
}

/// `[[queues.producers]]` and `[[queues.consumers]]`, as wrangler writes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuesToml {
    #[serde(default)]
    producers: Vec<ProducerToml>,
    #[serde(default)]
    consumers: Vec<QueueConsumer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProducerToml {
    binding: String,
    queue: String,
    /// Accepted for wrangler compatibility (a default delay for the binding's sends).
    #[serde(default)]
    #[allow(dead_code)]
    delivery_delay: Option<u32>,
}

/// `[triggers] crons = ["*/5 * * * *"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggersToml {
    #[serde(default)]
    crons: Vec<String>,
}

/// `routes = ["example.com/*"]` or wrangler's `routes = [{ pattern = "example.com/*" }]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RouteEntry {
    Pattern(String),
    Table { pattern: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildToml {
    command: String,
    #[serde(default)]
    cwd: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KvToml {
    binding: String,
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct D1Toml {
    binding: String,
    database_name: String,
    #[serde(default)]
    #[allow(dead_code)]
    database_id: Option<String>,
}

/// `[[r2_buckets]] binding = "MEDIA", bucket_name = "media"` (wrangler's
/// `preview_bucket_name` and `jurisdiction` mean nothing here and are refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct R2Toml {
    binding: String,
    bucket_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DurableObjectsToml {
    bindings: Vec<DurableObjectToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DurableObjectToml {
    name: String,
    class_name: String,
}

/// A worker ready to deploy.
#[derive(Debug)]
pub struct Project {
    pub name: String,
    /// The component or main JS module, resolved relative to the `nimbus.toml`.
    pub main: PathBuf,
    /// The directory of the `nimbus.toml`: JS module names are relative to it.
    pub root: PathBuf,
    pub build: Option<(String, PathBuf)>,
    pub manifest: WorkerManifest,
}

pub fn load(path: &Path) -> Result<Project> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, path)
}

fn parse(text: &str, path: &Path) -> Result<Project> {
    let mut toml: NimbusToml = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    validate_worker_name(&toml.name).map_err(|e| anyhow::anyhow!("{}: field `name`: {e}", path.display()))?;
    let base =
        path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    if toml.main.is_empty() {
        bail!(
            "{}: field `main` is empty: give the path of the .wasm component or of the main .js module",
            path.display()
        );
    }
    let (name, main, build) = (std::mem::take(&mut toml.name), std::mem::take(&mut toml.main), toml.build.take());
    let manifest = manifest_of(toml, path)?;
    Ok(Project {
        name,
        main: base.join(&main),
        root: base.clone(),
        build: build.map(|b| (b.command, base.join(b.cwd.unwrap_or_default()))),
        manifest,
    })
}

/// The bindings, vars and limits of a Pages project's `nimbus.toml` (no `main`; `name`
/// optional), for its Functions.
pub fn load_bindings(path: &Path) -> Result<WorkerManifest> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let toml: NimbusToml = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    manifest_of(toml, path)
}

fn manifest_of(toml: NimbusToml, path: &Path) -> Result<WorkerManifest> {
    let mut bindings = Vec::new();
    for kv in toml.kv_namespaces {
        bindings.push(Binding::Kv { name: kv.binding, namespace_id: kv.id });
    }
    for d1 in toml.d1_databases {
        bindings.push(Binding::D1 { name: d1.binding, database_name: d1.database_name });
    }
    for object in toml.durable_objects.map(|d| d.bindings).unwrap_or_default() {
        bindings.push(Binding::DurableObject { name: object.name, class_name: object.class_name });
    }
    for bucket in toml.r2_buckets {
        bindings.push(Binding::R2 { name: bucket.binding, bucket_name: bucket.bucket_name });
    }
    let (producers, queue_consumers) = toml.queues.map(|q| (q.producers, q.consumers)).unwrap_or_default();
    for producer in producers {
        bindings.push(Binding::Queue { name: producer.binding, queue: producer.queue });
    }
    let crons = toml.triggers.map(|t| t.crons).unwrap_or_default();
    let manifest = WorkerManifest {
        routes: toml
            .routes
            .into_iter()
            .map(|r| match r {
                RouteEntry::Pattern(p) | RouteEntry::Table { pattern: p } => p,
            })
            .collect(),
        limits: toml.limits,
        isolation: toml.isolation,
        bindings,
        vars: toml.vars,
        allowed_outbound_hosts: toml.allowed_outbound_hosts,
        queue_consumers,
        crons,
    };
    manifest.validate().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_becomes_a_manifest() {
        let text = r#"
            name = "app"
            main = "out/app.wasm"
            routes = ["example.com/*", { pattern = "api.example.com/v1/*" }]
            isolation = "request"
            [limits]
            cpu_ms = 20
            [[kv_namespaces]]
            binding = "CACHE"
            id = "c1"
            [[d1_databases]]
            binding = "DB"
            database_name = "notes"
            [[durable_objects.bindings]]
            name = "COUNTER"
            class_name = "Counter"
            [[r2_buckets]]
            binding = "MEDIA"
            bucket_name = "media"
            [[queues.producers]]
            binding = "EMAIL_QUEUE"
            queue = "emails"
            [[queues.consumers]]
            queue = "emails"
            max_batch_size = 20
            dead_letter_queue = "emails-dlq"
            [triggers]
            crons = ["*/5 * * * *", "0 18 * * 6L"]
        "#;
        let project = parse(text, Path::new("/w/nimbus.toml")).expect("parses");
        assert_eq!(project.main, Path::new("/w/out/app.wasm"));
        assert_eq!(project.manifest.routes, ["example.com/*", "api.example.com/v1/*"]);
        assert_eq!(project.manifest.isolation, Isolation::Request);
        assert_eq!(project.manifest.limits.cpu_ms, Some(20));
        let kinds: Vec<&str> = project.manifest.bindings.iter().map(Binding::kind).collect();
        assert_eq!(kinds, ["kv", "d1", "durable_object", "r2", "queue"]);
        let consumer = &project.manifest.queue_consumers[0];
        assert_eq!((consumer.queue.as_str(), consumer.max_batch_size, consumer.max_retries), ("emails", 20, 3));
        assert_eq!(consumer.dead_letter_queue.as_deref(), Some("emails-dlq"));
        assert_eq!(project.manifest.crons, ["*/5 * * * *", "0 18 * * 6L"]);
    }

    #[test]
    fn a_bad_cron_is_refused_with_its_field() {
        let text = "name = \"app\"\nmain = \"a.wasm\"\n[triggers]\ncrons = [\"* 25 * * *\"]\n";
        let err = parse(text, Path::new("nimbus.toml")).expect_err("bad hour");
        assert!(err.to_string().contains("hour"), "{err}");
        let text = "name = \"app\"\nmain = \"a.wasm\"\n[[queues.consumers]]\nqueue = \"q\"\nmax_batch_size = 500\n";
        let err = parse(text, Path::new("nimbus.toml")).expect_err("batch too large");
        assert!(err.to_string().contains("max_batch_size"), "{err}");
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let err = parse("name = \"app\"\nmain = \"a.wasm\"\n[limits]\ncpu = 5\n", Path::new("x/nimbus.toml"))
            .expect_err("typo");
        let msg = err.to_string();
        assert!(msg.contains("x/nimbus.toml") && msg.contains("cpu") && msg.contains("line 4"), "{msg}");
        let err = parse("name = \"App\"\nmain = \"a.wasm\"\n", Path::new("nimbus.toml")).expect_err("bad name");
        assert!(err.to_string().contains("field `name`"), "{err}");
        let err = parse("main = \"a.wasm\"\n", Path::new("nimbus.toml")).expect_err("no name");
        assert!(err.to_string().contains("field `name`"), "{err}");
    }
}
