//! Pages Functions at deploy: a `functions/` directory (or a `_worker.js`) compiled into one
//! JavaScript worker, `pages-<project>-<deployment>`, stored and pushed like any worker
//! before the deployment that runs it.
//!
//! Each file under `functions/` is a route (`nimbus_pages::functions::route_of`); its
//! `onRequest` / `onRequestGet` / … exports (read with oxc, TypeScript or not) are its
//! handlers. The routes are sorted by wrangler's `compareRoutes`
//! (`nimbus_pages::functions::compare`) and handed to `pages_runtime.js`, which runs
//! middleware, params, `context.next()` and `env.ASSETS` as Cloudflare does. Without a
//! `_routes.json`, one is generated from the routes (as wrangler does), so a request no
//! Function can match never starts the worker.

use crate::api::Api;
use crate::error::ControlPlaneError;
use crate::js::{Script, ScriptModule};
use nimbus_api::pages::FunctionsUpload;
use nimbus_pages::functions::{compare, route_of};
use nimbus_proto::manifest::WorkerManifest;
use sha2::{Digest, Sha256};

/// The generated entry module and the runtime it imports (names no upload may take).
const ENTRY: &str = "__pages/entry.js";
const RUNTIME: &str = "__pages/runtime.js";
const RUNTIME_SOURCE: &str = include_str!("../pages_runtime.js");
/// Methods a handler may be named for (`onRequestGet`).
const METHODS: [&str; 7] = ["Get", "Post", "Put", "Patch", "Delete", "Head", "Options"];
/// `_routes.json` holds at most 100 rules; more routes than that include everything.
const MAX_ROUTE_RULES: usize = 100;

/// One handler export of one Function file.
struct Route {
    path: String,
    method: Option<String>,
    middleware: bool,
    module: usize,
    export: String,
}

/// Builds and stores the worker of deployment `id`; its name. Sets `routes_json` (the
/// deployment's `_routes.json`) when the upload has none.
pub async fn build(
    api: &Api,
    project: &str,
    id: &str,
    upload: FunctionsUpload,
    routes_json: &mut Option<String>,
) -> Result<String, ControlPlaneError> {
    let invalid = |m: String| ControlPlaneError::Invalid(m);
    let manifest: WorkerManifest = match upload.manifest {
        Some(value) => serde_json::from_value(value).map_err(|e| invalid(format!("functions manifest: {e}")))?,
        None => WorkerManifest::default(),
    };
    manifest.validate().map_err(|e| invalid(format!("functions manifest: {e}")))?;
    manifest.limits.within(&api.ceilings).map_err(|e| invalid(format!("functions manifest: {e}")))?;
    if !manifest.routes.is_empty() || !manifest.queue_consumers.is_empty() || !manifest.crons.is_empty() {
        return Err(invalid(
            "a Pages project answers on its own hosts: routes, queue consumers and crons are for workers".into(),
        ));
    }
    let mut modules: Vec<ScriptModule> =
        upload.modules.into_iter().map(|m| ScriptModule { name: m.name, source: m.source }).collect();
    if let Some(taken) = modules.iter().find(|m| m.name.starts_with("__pages/")) {
        return Err(invalid(format!("module `{}`: `__pages/` is Nimbus's own", taken.name)));
    }
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let main = match upload.worker_main {
        // Advanced mode: the worker answers every request it is given, `env.ASSETS` added.
        Some(main) => {
            routes_json.get_or_insert_with(|| r#"{"version":1,"include":["/*"],"exclude":[]}"#.to_owned());
            let entry = format!(
                "import {{ advanced }} from {};\nimport worker from {};\nexport default advanced(worker);\n",
                quote(RUNTIME),
                quote(&main)
            );
            modules.push(ScriptModule { name: RUNTIME.into(), source: RUNTIME_SOURCE.into() });
            modules.push(ScriptModule { name: ENTRY.into(), source: entry });
            ENTRY.to_owned()
        }
        None => {
            let routes = routes_of(&modules)?;
            if routes.is_empty() {
                return Err(invalid("functions/ exports no `onRequest` handler".into()));
            }
            routes_json.get_or_insert_with(|| generated_routes_json(&routes));
            let entry = entry_source(&modules, &routes);
            modules.push(ScriptModule { name: RUNTIME.into(), source: RUNTIME_SOURCE.into() });
            modules.push(ScriptModule { name: ENTRY.into(), source: entry });
            ENTRY.to_owned()
        }
    };
    let script = Script { main, modules };
    let size: usize = script.modules.iter().map(|m| m.source.len()).sum();
    if size > api.max_component_bytes {
        return Err(invalid(format!("the Functions are {size} bytes, over the limit of {}", api.max_component_bytes)));
    }
    let component = api.js.build(&script, &manifest).await?;
    let name = format!("pages-{project}-{id}");
    let hash = hex::encode(Sha256::digest(&component));
    let manifest_json = serde_json::to_string(&manifest).map_err(|e| ControlPlaneError::Internal(e.to_string()))?;
    let note = format!("Pages Functions of {project} deployment {id}");
    let (_, seq) = api.store.deploy(&name, &hash, &component, &manifest_json, Some(&note))?;
    api.notify(seq);
    tracing::info!(worker = %name, %project, %id, "Pages Functions built");
    Ok(name)
}

/// Every handler of every Function file, in wrangler's order.
fn routes_of(modules: &[ScriptModule]) -> Result<Vec<Route>, ControlPlaneError> {
    let mut routes = Vec::new();
    for (index, module) in modules.iter().enumerate() {
        let Some(file) = module.name.strip_prefix("functions/") else { continue };
        let Some(route) = route_of(file).map_err(ControlPlaneError::Invalid)? else { continue };
        let exports =
            crate::typescript::exported_names(&module.name, &module.source).map_err(ControlPlaneError::Invalid)?;
        for export in exports {
            let method = match export.strip_prefix("onRequest") {
                Some("") => None,
                Some(method) if METHODS.contains(&method) => Some(method.to_ascii_uppercase()),
                _ => continue,
            };
            routes.push(Route {
                path: route.path.clone(),
                method,
                middleware: route.middleware,
                module: index,
                export,
            });
        }
    }
    routes.sort_by(|a, b| compare((&a.path, a.method.as_deref()), (&b.path, b.method.as_deref())));
    Ok(routes)
}

fn entry_source(modules: &[ScriptModule], routes: &[Route]) -> String {
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let mut used: Vec<usize> = routes.iter().map(|r| r.module).collect();
    used.sort_unstable();
    used.dedup();
    let mut source = format!("import {{ pages }} from {};\n", quote(RUNTIME));
    for index in used {
        source.push_str(&format!("import * as f{index} from {};\n", quote(&modules[index].name)));
    }
    source.push_str("export default pages([\n");
    for route in routes {
        source.push_str(&format!(
            "  {{ path: {}, method: {}, middleware: {}, handler: f{}[{}] }},\n",
            quote(&route.path),
            route.method.as_deref().map_or("null".to_owned(), quote),
            route.middleware,
            route.module,
            quote(&route.export)
        ));
    }
    source.push_str("]);\n");
    source
}

/// The `_routes.json` wrangler would write: each route up to its first parameter, then `*`;
/// middleware covers everything below its directory.
fn generated_routes_json(routes: &[Route]) -> String {
    let mut include: Vec<String> = Vec::new();
    for route in routes {
        let fixed: Vec<&str> =
            route.path.split('/').filter(|s| !s.is_empty()).take_while(|s| !s.starts_with(':')).collect();
        let dynamic = route.path.split('/').any(|s| s.starts_with(':'));
        let base = format!("/{}", fixed.join("/"));
        let mut rules = Vec::new();
        if route.middleware || dynamic {
            if base != "/" && route.middleware {
                rules.push(base.clone());
            }
            rules.push(if base == "/" { "/*".to_owned() } else { format!("{base}/*") });
        } else {
            rules.push(base);
        }
        for rule in rules {
            if !include.contains(&rule) {
                include.push(rule);
            }
        }
    }
    if include.len() > MAX_ROUTE_RULES || include.iter().any(|r| r == "/*") {
        include = vec!["/*".to_owned()];
    }
    serde_json::json!({ "version": 1, "include": include, "exclude": [] }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, source: &str) -> ScriptModule {
        ScriptModule { name: name.into(), source: source.into() }
    }

    #[test]
    fn routes_are_found_sorted_and_turned_into_routes_json() {
        let modules = [
            module("functions/index.ts", "export const onRequest = () => new Response('home');"),
            module("functions/api/_middleware.ts", "export const onRequest = [async (c) => c.next()];"),
            module(
                "functions/api/users/[id].ts",
                "export function onRequestGet() {}\nexport function onRequestPost() {}",
            ),
            module("functions/api/[[rest]].js", "export const onRequest = () => {};"),
            module("lib/db.ts", "export const onRequest = 1;"),
        ];
        let routes = routes_of(&modules).expect("routes");
        let order: Vec<(String, Option<String>)> = routes.iter().map(|r| (r.path.clone(), r.method.clone())).collect();
        assert_eq!(
            order,
            [
                ("/api/users/:id".into(), Some("GET".into())),
                ("/api/users/:id".into(), Some("POST".into())),
                ("/api/:rest*".into(), None),
                ("/api".into(), None),
                ("/".into(), None),
            ]
        );
        assert!(routes.iter().any(|r| r.middleware && r.path == "/api"));
        let json: serde_json::Value = serde_json::from_str(&generated_routes_json(&routes)).expect("json");
        assert_eq!(json["include"], serde_json::json!(["/api/users/*", "/api/*", "/api", "/"]));
        let entry = entry_source(&modules, &routes);
        assert!(entry.contains("import * as f2 from \"functions/api/users/[id].ts\";"), "{entry}");
        assert!(entry.contains("handler: f2[\"onRequestPost\"]"), "{entry}");
        assert!(!entry.contains("lib/db.ts"), "helpers are imported by their Functions, not routed: {entry}");
    }
}
