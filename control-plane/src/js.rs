//! JavaScript workers: the engine component (`runtimes/js`) pre-initialised with a worker's
//! ES modules at deploy.
//!
//! A `.js` deploy carries the modules, not a component. [`JsBuilder::build`] runs the
//! engine's `init` export once under Wizer (the `wasmtime-wizer` crate, component mode): the
//! prelude and the user's modules are parsed and evaluated there, and the memory of that
//! instance becomes the data of a new component. That snapshot is what is stored and pushed
//! to nodes, so a node never parses the script: a request starts with the modules evaluated.
//!
//! `.ts` / `.mts` modules are erased to JavaScript first (`crate::typescript`), lines and
//! columns kept. A syntax error, a throw at the top level or a missing `export default
//! { fetch }` fails the deploy with the module, line and column. The top level runs with
//! a fuel budget and a memory cap, so `while (true) {}` or a huge allocation there fails the
//! deploy instead of hanging the control plane. Bindings are not available at the top level
//! (as on Cloudflare): calling one traps, and the deploy says so.

use crate::error::ControlPlaneError;
use nimbus_proto::manifest::WorkerManifest;
use nimbus_wasm::{FunctionCache, OutboundPolicy};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable, Val};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// File name of the engine next to the control plane's executable.
pub const ENGINE_FILE: &str = "nimbus-js.wasm";
/// Instructions (roughly) the top level of a script may run at deploy.
const INIT_FUEL: u64 = 4_000_000_000;
/// Memory the top level of a script may use at deploy.
const INIT_MEMORY_BYTES: usize = 256 << 20;

/// One ES module of a JavaScript worker.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptModule {
    /// Path relative to the project, as `import` specifiers resolve it (`src/util.js`).
    pub name: String,
    pub source: String,
}

/// A JavaScript worker as `nimbus deploy` uploads it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The module whose default export handles events; one of `modules`.
    pub main: String,
    pub modules: Vec<ScriptModule>,
}

/// Builds snapshots of the JavaScript engine; `None` engine: this control plane has none.
pub struct JsBuilder {
    engine: Engine,
    component: Option<Arc<[u8]>>,
    /// Where the engine was looked for, for the error when it is missing.
    looked_in: PathBuf,
    /// One build at a time: each compiles the engine and holds its memory.
    permits: Semaphore,
}

impl JsBuilder {
    /// Loads the engine from `path`, or from [`ENGINE_FILE`] next to the executable. A missing
    /// file is not an error here: only JavaScript deploys need it, and they are told.
    pub fn load(path: Option<&Path>) -> Result<Self, ControlPlaneError> {
        let looked_in = match path {
            Some(path) => path.to_path_buf(),
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join(ENGINE_FILE)))
                .unwrap_or_else(|| PathBuf::from(ENGINE_FILE)),
        };
        let component = match std::fs::read(&looked_in) {
            Ok(bytes) => {
                tracing::info!(engine = %looked_in.display(), bytes = bytes.len(), "JavaScript engine loaded");
                Some(Arc::from(bytes))
            }
            Err(e) if path.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(looked_in = %looked_in.display(), "no JavaScript engine: .js deploys are refused");
                None
            }
            Err(source) => {
                return Err(ControlPlaneError::Io {
                    context: format!("reading the JavaScript engine {}", looked_in.display()),
                    source,
                })
            }
        };
        let mut config = Config::new();
        config.consume_fuel(true);
        // The instrumented engine differs from the last one only in its data: compile each
        // function once per process.
        config
            .enable_incremental_compilation(Arc::new(FunctionCache::default()))
            .map_err(|e| ControlPlaneError::Internal(format!("cannot configure wasmtime: {e}")))?;
        let engine =
            Engine::new(&config).map_err(|e| ControlPlaneError::Internal(format!("cannot configure wasmtime: {e}")))?;
        Ok(JsBuilder { engine, component, looked_in, permits: Semaphore::new(1) })
    }

    pub fn available(&self) -> bool {
        self.component.is_some()
    }

    /// The engine snapshot for `script` with `manifest`'s bindings and vars as `env`.
    pub async fn build(&self, script: &Script, manifest: &WorkerManifest) -> Result<Vec<u8>, ControlPlaneError> {
        let Some(component) = self.component.clone() else {
            return Err(ControlPlaneError::Unavailable(format!(
                "this control plane has no JavaScript engine (looked for {}): build it with `runtimes/js/build`",
                self.looked_in.display()
            )));
        };
        check_modules(script)?;
        // TypeScript modules keep their names (errors name the `.ts` file) and lose their types.
        let mut stripped = script.clone();
        for module in &mut stripped.modules {
            if crate::typescript::is_typescript(&module.name) {
                module.source =
                    crate::typescript::strip(&module.name, &module.source).map_err(ControlPlaneError::Invalid)?;
            }
        }
        let script = &stripped;
        // `consumes` and `crons` let the engine check at deploy that the script has the
        // handlers they need.
        let env = serde_json::json!({
            "bindings": manifest.bindings,
            "vars": manifest.vars,
            "consumes": manifest.queue_consumers.iter().map(|c| &c.queue).collect::<Vec<_>>(),
            "crons": manifest.crons,
        })
        .to_string();
        let call = init_call(script, &env);
        let _permit =
            self.permits.acquire().await.map_err(|_| ControlPlaneError::Internal("the JS builder is closed".into()))?;
        let engine = self.engine.clone();
        let started = std::time::Instant::now();
        let runtime = tokio::runtime::Handle::current();
        let snapshot = tokio::task::spawn_blocking(move || runtime.block_on(snapshot(engine, component, call)))
            .await
            .map_err(|e| ControlPlaneError::Internal(format!("the JS build task failed: {e}")))??;
        tracing::info!(
            main = %script.main,
            modules = script.modules.len(),
            bytes = snapshot.len(),
            ms = started.elapsed().as_millis() as u64,
            "JavaScript worker pre-initialised"
        );
        Ok(snapshot)
    }
}

fn check_modules(script: &Script) -> Result<(), ControlPlaneError> {
    let invalid = |m: String| Err(ControlPlaneError::Invalid(m));
    if script.modules.is_empty() {
        return invalid("the script has no modules".into());
    }
    let mut seen = std::collections::HashSet::new();
    for module in &script.modules {
        if module.name.is_empty() || module.name.starts_with('/') || module.name.split('/').any(|s| s == "..") {
            return invalid(format!("module name `{}` must be a relative path inside the project", module.name));
        }
        if !seen.insert(module.name.as_str()) {
            return invalid(format!("module `{}` is uploaded twice", module.name));
        }
    }
    if !seen.contains(script.main.as_str()) {
        return invalid(format!("the main module `{}` is not among the uploaded modules", script.main));
    }
    Ok(())
}

/// The engine's `init(modules, main, env)` as a WAVE call, the form Wizer takes arguments in.
fn init_call(script: &Script, env: &str) -> String {
    let modules: Vec<String> =
        script.modules.iter().map(|m| format!("({}, {})", wave_string(&m.name), wave_string(&m.source))).collect();
    format!("init([{}], {}, {})", modules.join(", "), wave_string(&script.main), wave_string(env))
}

fn wave_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the engine's instance sees while `init` runs: WASI (clocks, random), `wasi:http`
/// that refuses every request, and a console that logs through the control plane; the Nimbus
/// bindings trap.
struct InitHost {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// A script's top level may not make requests (nor could it on Cloudflare).
    no_outbound: OutboundPolicy,
}

impl WasiView for InitHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for InitHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.no_outbound }
    }
}

/// Every function of the `nimbus:worker` binding interfaces the component imports (the
/// console aside) as a trap: bindings are for events, not for the top level.
fn trap_bindings(linker: &mut Linker<InitHost>, component: &Component) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    let engine = linker.engine().clone();
    for (name, item) in component.component_type().imports(&engine) {
        if !name.starts_with("nimbus:worker/") || name.starts_with("nimbus:worker/console@") {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut linked = linker.instance(name)?;
        for (function, item) in instance.exports(&engine) {
            if matches!(item.ty, ComponentItem::ComponentFunc(_)) {
                let what = format!("{name}#{function}");
                linked.func_new(function, move |_store, _ty, _params, _results| {
                    Err(wasmtime::format_err!("unknown import: binding `{what}` called at the top level"))
                })?;
            }
        }
    }
    Ok(())
}

async fn snapshot(engine: Engine, component: Arc<[u8]>, call: String) -> Result<Vec<u8>, ControlPlaneError> {
    let internal = |what: &str, e: wasmtime::Error| ControlPlaneError::Internal(format!("{what}: {e:#}"));
    let mut store = Store::new(
        &engine,
        InitHost {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            no_outbound: OutboundPolicy::deny_all(),
            limits: StoreLimitsBuilder::new().memory_size(INIT_MEMORY_BYTES).build(),
        },
    );
    store.limiter(|host| &mut host.limits);
    store.set_fuel(INIT_FUEL).map_err(|e| internal("fuel", e))?;
    let mut wizer = wasmtime_wizer::Wizer::new();
    wizer.init_func(call);
    let result = wizer
        .run_component(&mut store, &component, async |store, component: &Component| {
            let mut linker = Linker::<InitHost>::new(store.engine());
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
            linker.instance("nimbus:worker/console@0.1.0")?.func_new(
                "log",
                |_store, _ty, params: &[Val], _results| {
                    if let Some(Val::String(message)) = params.get(1) {
                        tracing::info!(target: "worker", "(deploy) {message}");
                    }
                    Ok(())
                },
            )?;
            trap_bindings(&mut linker, component)?;
            linker.instantiate_async(store, component).await
        })
        .await;
    let (snapshot, returned) = match result {
        Ok(done) => done,
        Err(e) => return Err(init_failure(&store, e)),
    };
    match returned.first() {
        Some(Val::Result(Ok(_))) => Ok(snapshot),
        Some(Val::Result(Err(Some(message)))) => match message.as_ref() {
            Val::String(message) => Err(ControlPlaneError::Invalid(message.clone())),
            other => Err(ControlPlaneError::Invalid(format!("the script failed to load: {other:?}"))),
        },
        other => Err(ControlPlaneError::Internal(format!("the engine's init returned {other:?}"))),
    }
}

/// A trap during `init`, said in terms of the script.
fn init_failure(store: &Store<InitHost>, error: wasmtime::Error) -> ControlPlaneError {
    let text = format!("{error:#}");
    if store.get_fuel().is_ok_and(|fuel| fuel == 0) || text.contains("all fuel consumed") {
        return ControlPlaneError::Invalid(
            "the script's top level ran too long at deploy (an endless loop?): the top level must only define handlers"
                .into(),
        );
    }
    if text.contains("unknown import") || text.contains("has not been defined") {
        return ControlPlaneError::Invalid(
            "the script called a binding (env.*, fetch) at its top level: bindings work only while handling an event"
                .into(),
        );
    }
    if text.contains("memory") && (text.contains("grow") || text.contains("limit")) {
        return ControlPlaneError::Invalid(format!(
            "the script's top level needs more than {} MiB at deploy",
            INIT_MEMORY_BYTES >> 20
        ));
    }
    ControlPlaneError::Invalid(format!("the script could not be pre-initialised: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wave_strings_escape_what_wave_needs() {
        assert_eq!(wave_string("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u{1}é\"");
    }

    #[test]
    fn module_names_stay_inside_the_project() {
        let script = |name: &str| Script {
            main: name.into(),
            modules: vec![ScriptModule { name: name.into(), source: String::new() }],
        };
        assert!(check_modules(&script("src/index.js")).is_ok());
        assert!(check_modules(&script("../etc/passwd")).is_err());
        assert!(check_modules(&script("/abs.js")).is_err());
        let mut missing_main = script("src/index.js");
        missing_main.main = "other.js".into();
        assert!(check_modules(&missing_main).is_err());
    }
}
