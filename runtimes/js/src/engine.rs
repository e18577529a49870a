//! The QuickJS runtime of one instance: loading the worker's modules at init, and running
//! one event at a time to completion.
//!
//! An event (a request, an object's fetch or alarm, a queue batch, a cron tick) calls one `__nimbus.dispatch*` function
//! of the prelude, which returns a promise; [`drive`] then runs the job queue, and sleeps
//! until the next timer when only timers are left, until that promise settles. A promise
//! that can no longer settle (nothing queued, no timer) fails the event instead of hanging.
//! After the response is out, [`Engine::finish_event`] drives the event's `waitUntil`
//! promises, clears its timers and reports rejections nobody handled.

use crate::http::{Incoming, Reply};
use crate::natives::{self, bytes_of};
use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::promise::PromiseState;
use rquickjs::{Array, Context, Ctx, Function, Module, Object, Promise, Runtime, TypedArray, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// The Web and Workers APIs, in JavaScript, on top of `__nimbus`.
const PRELUDE: &str = include_str!("prelude.js");
/// The built-in module `cloudflare:workers` (`DurableObject`, `WorkerEntrypoint`, `env`).
const CLOUDFLARE_WORKERS: &str = include_str!("cloudflare_workers.js");
const CLOUDFLARE_WORKERS_NAME: &str = "cloudflare:workers";
/// QuickJS's own stack bound. quickjs-ng compiles its stack check out for wasm targets, so
/// in practice runaway recursion exhausts wasmtime's stack and traps: the request ends with
/// a 500 and the instance is retired, which is the guarantee that matters.
const MAX_STACK: usize = 768 * 1024;

/// Bytes allocated between cycle collections (QuickJS's default is 256 KiB).
const GC_THRESHOLD: usize = 8 << 20;

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

pub struct Engine {
    /// Kept alive with the context; every call goes through the context.
    _runtime: Runtime,
    context: Context,
}

/// Runs `f` on the engine, or returns `None` when `init` never ran (an engine component
/// deployed without a script).
pub fn with<R>(f: impl FnOnce(&mut Engine) -> R) -> Option<R> {
    ENGINE.with(|engine| engine.borrow_mut().as_mut().map(f))
}

/// Builds the engine for the worker's modules; `Err` says what is wrong with the script
/// (a syntax error names the module, line and column).
pub fn init(modules: Vec<(String, String)>, main: &str, env: &str) -> Result<(), String> {
    let runtime = Runtime::new().map_err(|e| format!("cannot start QuickJS: {e}"))?;
    runtime.set_max_stack_size(MAX_STACK);
    // Cycle collection runs when this much was allocated since the last one. QuickJS frees
    // most garbage by reference counting; a larger threshold keeps the collector off the
    // per-request path (instances are retired after their request budget anyway).
    runtime.set_gc_threshold(GC_THRESHOLD);
    let sources: BTreeMap<String, String> = modules.into_iter().collect();
    if !sources.contains_key(main) {
        return Err(format!("the main module `{main}` is not among the uploaded modules"));
    }
    let names = sources.keys().cloned().collect();
    runtime.set_loader(BundleResolver { names }, BundleLoader { sources });
    runtime.set_host_promise_rejection_tracker(Some(Box::new(|ctx, promise, reason, handled| {
        if let Ok(track) = prelude_fn(&ctx, "trackRejection") {
            // Tracking is best effort: a failure here must not disturb the event.
            let _ = track.call::<_, ()>((promise, reason, handled));
        }
    })));
    let context = Context::full(&runtime).map_err(|e| format!("cannot create a JS context: {e}"))?;
    context.with(|ctx| -> Result<(), String> {
        natives::install(&ctx).map_err(|e| describe(&ctx, e))?;
        let mut options = rquickjs::context::EvalOptions::default();
        options.global = true;
        options.strict = true;
        options.filename = Some("nimbus:prelude".into());
        ctx.eval_with_options::<(), _>(PRELUDE, options).map_err(|e| format!("prelude: {}", describe(&ctx, e)))?;
        let boot = prelude_fn(&ctx, "boot").map_err(|e| describe(&ctx, e))?;
        boot.call::<_, ()>((env,)).map_err(|e| describe(&ctx, e))?;
        let imported = Module::import(&ctx, main).map_err(|e| describe(&ctx, e))?;
        let namespace = drive(&ctx, imported)?;
        let set_exports = prelude_fn(&ctx, "setExports").map_err(|e| describe(&ctx, e))?;
        set_exports.call::<_, ()>((namespace,)).map_err(|e| describe(&ctx, e))?;
        Ok(())
    })?;
    ENGINE.with(|engine| *engine.borrow_mut() = Some(Engine { _runtime: runtime, context }));
    Ok(())
}

impl Engine {
    /// A request to the worker's default export.
    pub fn fetch(&mut self, request: Incoming) -> Reply {
        self.context.with(|ctx| {
            let (method, url) = (request.method.clone(), request.url.clone());
            let result = dispatch(&ctx, "dispatchFetch", |ctx, f| {
                let (headers, body) = request_parts(ctx, request)?;
                f.call((method, url, headers, body))
            });
            reply_or_500(&ctx, result)
        })
    }

    /// A request to the object `id` of the exported class `class_name`.
    pub fn object_fetch(&mut self, class_name: &str, id: &str, request: Incoming) -> Reply {
        self.context.with(|ctx| {
            let (method, url) = (request.method.clone(), request.url.clone());
            let result = dispatch(&ctx, "dispatchObjectFetch", |ctx, f| {
                let (headers, body) = request_parts(ctx, request)?;
                f.call((class_name, id, method, url, headers, body))
            });
            reply_or_500(&ctx, result)
        })
    }

    /// The object's alarm; `Err` (the thrown error) makes the node retry it with backoff.
    pub fn object_alarm(&mut self, class_name: &str, id: &str, retry_count: u32) -> Result<(), String> {
        self.context.with(|ctx| {
            dispatch(&ctx, "dispatchAlarm", |_, f| f.call((class_name, id, retry_count))).map(drop).map_err(|e| {
                log_error(&ctx, &format!("alarm of {class_name} {id} failed: {e}"));
                e
            })
        })
    }

    pub fn object_websocket_message(
        &mut self,
        class_name: &str,
        id: &str,
        socket: u64,
        message: crate::bindings::nimbus::worker::websocket::Message,
    ) {
        use crate::bindings::nimbus::worker::websocket::Message;
        self.context.with(|ctx| {
            let result = dispatch(&ctx, "dispatchWebSocketMessage", |ctx, f| {
                let message = match message {
                    Message::Text(text) => rquickjs::String::from_str(ctx.clone(), &text)?.into_value(),
                    Message::Binary(bytes) => TypedArray::<u8>::new(ctx.clone(), bytes)?.into_value(),
                };
                f.call((class_name, id, socket as f64, message))
            });
            if let Err(e) = result {
                log_error(&ctx, &format!("webSocketMessage of {class_name} {id} failed: {e}"));
            }
        })
    }

    pub fn object_websocket_close(&mut self, class_name: &str, id: &str, socket: u64, code: u16, reason: &str) {
        self.context.with(|ctx| {
            let result =
                dispatch(&ctx, "dispatchWebSocketClose", |_, f| f.call((class_name, id, socket as f64, code, reason)));
            if let Err(e) = result {
                log_error(&ctx, &format!("webSocketClose of {class_name} {id} failed: {e}"));
            }
        })
    }

    /// A batch of `queue`: a decision per message (-1 ack, -2 retry by the consumer's backoff,
    /// otherwise retry after that many seconds) and what the handler threw, if it did.
    pub fn queue(
        &mut self,
        queue: &str,
        messages: Vec<crate::bindings::exports::nimbus::worker::queue_handler::Message>,
    ) -> Result<(Vec<f64>, Option<String>), String> {
        self.context.with(|ctx| {
            let value = dispatch(&ctx, "dispatchQueue", |ctx, f| {
                let raw = Array::new(ctx.clone())?;
                for (at, m) in messages.into_iter().enumerate() {
                    let object = Object::new(ctx.clone())?;
                    object.set("id", m.id)?;
                    object.set("timestamp", m.timestamp_ms as f64)?;
                    object.set("body", TypedArray::<u8>::new(ctx.clone(), m.body)?)?;
                    object.set("contentType", m.content_type)?;
                    object.set("attempts", m.attempts)?;
                    raw.set(at, object)?;
                }
                f.call((queue, raw))
            })?;
            let parts = || -> rquickjs::Result<(Vec<f64>, Option<String>)> {
                let object: Object<'_> = Object::from_value(value)?;
                Ok((object.get("decisions")?, object.get("error")?))
            };
            parts().map_err(|e| describe(&ctx, e))
        })
    }

    /// A cron tick; `Err` is what the handler threw.
    pub fn scheduled(&mut self, cron: &str, scheduled_ms: u64) -> Result<(), String> {
        self.context.with(|ctx| {
            dispatch(&ctx, "dispatchScheduled", |_, f| f.call((cron, scheduled_ms as f64))).map(drop).map_err(|e| {
                log_error(&ctx, &format!("scheduled handler ({cron}) failed: {e}"));
                e
            })
        })
    }

    /// After the response: the event's `waitUntil` work, then its leftovers cleared.
    pub fn finish_event(&mut self) {
        self.context.with(|ctx| {
            if let Err(e) = dispatch(&ctx, "finishEvent", |_, f| f.call(())) {
                log_error(&ctx, &format!("waitUntil: {e}"));
            }
        });
        crate::body::clear();
    }
}

/// Calls the prelude's `name` (which returns a promise) and drives it to its value.
fn dispatch<'js>(
    ctx: &Ctx<'js>,
    name: &str,
    call: impl FnOnce(&Ctx<'js>, Function<'js>) -> rquickjs::Result<Promise<'js>>,
) -> Result<Value<'js>, String> {
    let function = prelude_fn(ctx, name).map_err(|e| describe(ctx, e))?;
    let promise = call(ctx, function).map_err(|e| describe(ctx, e))?;
    drive(ctx, promise)
}

/// Runs jobs and timers until `promise` settles.
fn drive<'js>(ctx: &Ctx<'js>, promise: Promise<'js>) -> Result<Value<'js>, String> {
    loop {
        while ctx.execute_pending_job() {}
        match promise.state() {
            PromiseState::Resolved => {
                return promise
                    .result::<Value<'js>>()
                    .unwrap_or_else(|| Ok(Value::new_undefined(ctx.clone())))
                    .map_err(|e| describe(ctx, e));
            }
            PromiseState::Rejected => {
                // The engine handles this rejection: it is not an unhandled one.
                if let Ok(track) = prelude_fn(ctx, "trackRejection") {
                    let _ = track.call::<_, ()>((promise.clone(), Value::new_undefined(ctx.clone()), true));
                }
                return match promise.result::<Value<'js>>() {
                    Some(Err(e)) => Err(describe(ctx, e)),
                    _ => Err("the promise was rejected".to_string()),
                };
            }
            PromiseState::Pending => {}
        }
        let next_timer: f64 = prelude_fn(ctx, "nextTimer").and_then(|f| f.call(())).map_err(|e| describe(ctx, e))?;
        if next_timer < 0.0 {
            return Err("the handler's promise can never settle: nothing is queued and no timer is pending".to_string());
        }
        prelude_fn(ctx, "runTimers").and_then(|f| f.call::<_, ()>(())).map_err(|e| describe(ctx, e))?;
    }
}

fn prelude_fn<'js>(ctx: &Ctx<'js>, name: &str) -> rquickjs::Result<Function<'js>> {
    let natives: Object<'js> = ctx.globals().get("__nimbus")?;
    natives.get(name)
}

/// The headers and body the prelude's `Request` is built from: the body is `null`, bytes,
/// or `{stream, length}` naming a host stream.
fn request_parts<'js>(ctx: &Ctx<'js>, request: Incoming) -> rquickjs::Result<(Array<'js>, Value<'js>)> {
    let body = match request.stream {
        Some(handle) => {
            let stream = Object::new(ctx.clone())?;
            stream.set("stream", handle)?;
            stream.set("length", crate::body::length(handle).map(|n| n as f64))?;
            stream.into_value()
        }
        None if request.body.is_empty() => Value::new_null(ctx.clone()),
        None => natives::uint8_array(ctx, request.body)?,
    };
    Ok((natives::pairs_array(ctx, request.headers)?, body))
}

/// The `{status, headers, body}` a dispatch resolved to, or a 500 naming the error (which
/// is logged with its stack).
fn reply_or_500<'js>(ctx: &Ctx<'js>, result: Result<Value<'js>, String>) -> Reply {
    let reply = result.and_then(|value| {
        let parts = || -> rquickjs::Result<Reply> {
            let object: Object<'js> = Object::from_value(value)?;
            let headers = natives::pairs(&object.get("headers")?)?;
            let body: Value<'js> = object.get("body")?;
            let stream: Option<u32> = object.get("stream")?;
            Ok(Reply { status: object.get("status")?, headers, body: bytes_of(ctx, &body)?, stream })
        };
        parts().map_err(|e| describe(ctx, e))
    });
    match reply {
        Ok(reply) => reply,
        Err(error) => {
            log_error(ctx, &format!("Uncaught {error}"));
            let first_line = error.lines().next().unwrap_or("error");
            Reply::error(500, &format!("Worker threw exception: {first_line}"))
        }
    }
}

fn log_error(ctx: &Ctx<'_>, message: &str) {
    let _ = ctx;
    crate::bindings::nimbus::worker::console::log(crate::bindings::nimbus::worker::console::Level::Error, message);
}

/// The text of a failure: for a thrown `Error`, `Name: message` and its stack.
pub fn describe(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
    if !matches!(error, rquickjs::Error::Exception) {
        return error.to_string();
    }
    let thrown = ctx.catch();
    if let Some(object) = thrown.as_object() {
        let name: Option<String> = object.get("name").ok();
        let message: Option<String> = object.get("message").ok();
        if let Some(message) = message {
            let stack: Option<String> = object.get("stack").ok();
            let mut text = format!("{}: {message}", name.unwrap_or_else(|| "Error".into()));
            if let Some(stack) = stack.filter(|s| !s.trim().is_empty()) {
                text.push('\n');
                text.push_str(stack.trim_end());
            }
            return text;
        }
    }
    match ctx.json_stringify(thrown.clone()) {
        Ok(Some(json)) => json.to_string().unwrap_or_else(|_| "a value".into()),
        _ => "undefined".to_string(),
    }
}

/// Resolves `import` specifiers among the uploaded modules: relative paths against the
/// importing module, `cloudflare:workers`; nothing from outside the bundle.
struct BundleResolver {
    names: Vec<String>,
}

impl Resolver for BundleResolver {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        if name == CLOUDFLARE_WORKERS_NAME || self.names.iter().any(|n| n == name) {
            return Ok(name.to_string());
        }
        if name.starts_with("./") || name.starts_with("../") {
            let joined = join(base, name);
            // TypeScript's conventions too: `./util` and `./util.js` may name `util.ts`.
            let stem = joined.strip_suffix(".js").unwrap_or(&joined);
            let candidates = [
                joined.clone(),
                format!("{joined}.js"),
                format!("{joined}.mjs"),
                format!("{joined}.ts"),
                format!("{joined}.mts"),
                format!("{stem}.ts"),
                format!("{joined}/index.ts"),
                format!("{joined}/index.js"),
            ];
            for candidate in candidates {
                if self.names.contains(&candidate) {
                    return Ok(candidate);
                }
            }
            return Err(rquickjs::Error::new_resolving_message(
                base,
                name,
                format!("`{joined}` is not among the uploaded modules ({})", self.names.join(", ")),
            ));
        }
        let _ = ctx;
        Err(rquickjs::Error::new_resolving_message(
            base,
            name,
            "only relative imports of the worker's own modules and `cloudflare:workers` are available (bundle npm packages first)",
        ))
    }
}

/// `base`'s directory joined with the relative `name`, `.` and `..` folded.
fn join(base: &str, name: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for segment in name.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

struct BundleLoader {
    sources: BTreeMap<String, String>,
}

impl Loader for BundleLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, rquickjs::module::Declared>> {
        if name == CLOUDFLARE_WORKERS_NAME {
            return Module::declare(ctx.clone(), name, CLOUDFLARE_WORKERS);
        }
        match self.sources.get(name) {
            Some(source) => Module::declare(ctx.clone(), name, source.as_str()),
            None => Err(rquickjs::Error::new_loading_message(name, "not among the uploaded modules")),
        }
    }
}
