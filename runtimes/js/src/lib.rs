//! The Nimbus JavaScript engine: QuickJS (quickjs-ng, through `rquickjs`) as a worker
//! component with Cloudflare's Workers API.
//!
//! The component implements `nimbus:worker/js-engine`. At deploy the control plane runs its
//! `init` export once, under Wizer, with the worker's ES modules: the prelude (the Web and
//! Workers APIs, `src/prelude.js`) and the user's modules are evaluated then, and the
//! snapshot taken afterwards is what nodes run. A request therefore starts in a JS context
//! whose modules are already evaluated; it only builds the `Request`, calls the handler and
//! drives the job queue (and timers) until the handler's promise settles.
//!
//! # Layout
//! - [`engine`]: the QuickJS runtime and context, module loading at init, the event loop
//!   that runs one event (a fetch, an object's fetch or alarm, a queue batch, a cron tick)
//!   to completion.
//! - [`natives`]: the native functions the prelude builds the JS API on (`__nimbus.*`):
//!   bindings, outbound fetch, randomness, UTF-8, logging, sleeping for timers.
//! - [`http`]: reading `wasi:http` requests and writing responses, outbound requests.
//! - [`body`]: host streams (the request's body, R2 bodies) behind handles, read in slices
//!   or handed on to the host untouched.
//! - [`r2`]: the natives of `R2Bucket`.
//!
//! One instance runs one event at a time (the node guarantees it), so the engine lives in a
//! thread-local and every export borrows it for the duration of the call.

mod body;
mod engine;
mod http;
mod natives;
mod r2;

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "nimbus:worker/js-engine",
        generate_all,
    });
}

use bindings::exports::nimbus::worker::durable_object::{self, ObjectInfo};
use bindings::exports::nimbus::worker::{queue_handler, scheduled_handler};
use bindings::exports::wasi::http::incoming_handler;
use bindings::nimbus::worker::durable_objects::{HttpRequest, HttpResponse};
use bindings::nimbus::worker::websocket::Message;
use bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Component;

/// What an engine answers when `init` never ran on it.
const NOT_INITIALISED: &str = "this JavaScript engine holds no script: deploy a `.js` worker with `nimbus deploy`";

impl bindings::Guest for Component {
    fn init(modules: Vec<(String, String)>, main: String, env: String) -> Result<(), String> {
        engine::init(modules, &main, &env)
    }
}

impl incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let response = match http::read_request(request) {
            Ok(request) => {
                engine::with(|engine| engine.fetch(request)).unwrap_or_else(|| http::Reply::error(500, NOT_INITIALISED))
            }
            Err(e) => http::Reply::error(400, &format!("could not read the request: {e}")),
        };
        http::send_response(response, out, || {
            engine::with(|engine| engine.finish_event());
        });
    }
}

impl durable_object::Guest for Component {
    fn fetch(object: ObjectInfo, request: HttpRequest) -> HttpResponse {
        let request = http::Incoming {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            stream: None,
        };
        let reply = engine::with(|engine| engine.object_fetch(&object.class_name, &object.id, request))
            .unwrap_or_else(|| http::Reply::error(500, NOT_INITIALISED));
        engine::with(|engine| engine.finish_event());
        HttpResponse { status: reply.status, headers: reply.headers, body: reply.body }
    }

    fn alarm(object: ObjectInfo, retry_count: u32) -> Result<(), String> {
        let result = engine::with(|engine| engine.object_alarm(&object.class_name, &object.id, retry_count))
            .unwrap_or_else(|| Err(NOT_INITIALISED.to_string()));
        engine::with(|engine| engine.finish_event());
        result
    }

    fn websocket_message(object: ObjectInfo, socket: u64, message: Message) {
        engine::with(|engine| engine.object_websocket_message(&object.class_name, &object.id, socket, message));
        engine::with(|engine| engine.finish_event());
    }

    fn websocket_close(object: ObjectInfo, socket: u64, code: u16, reason: String) {
        engine::with(|engine| engine.object_websocket_close(&object.class_name, &object.id, socket, code, &reason));
        engine::with(|engine| engine.finish_event());
    }
}

impl queue_handler::Guest for Component {
    fn queue(queue: String, messages: Vec<queue_handler::Message>) -> queue_handler::Outcome {
        let count = messages.len();
        let result =
            engine::with(|engine| engine.queue(&queue, messages)).unwrap_or_else(|| Err(NOT_INITIALISED.to_string()));
        engine::with(|engine| engine.finish_event());
        match result {
            Ok((decisions, error)) => queue_handler::Outcome {
                decisions: decisions
                    .into_iter()
                    .map(|d| match d {
                        d if d == -1.0 => queue_handler::Decision::Ack,
                        d if d < 0.0 => queue_handler::Decision::Retry(None),
                        d => queue_handler::Decision::Retry(Some(d.min(f64::from(u32::MAX)) as u32)),
                    })
                    .collect(),
                error,
            },
            // The engine itself failed: every message is retried.
            Err(error) => queue_handler::Outcome {
                decisions: vec![queue_handler::Decision::Retry(None); count],
                error: Some(error),
            },
        }
    }
}

impl scheduled_handler::Guest for Component {
    fn scheduled(controller: scheduled_handler::Controller) -> Result<(), String> {
        let result = engine::with(|engine| engine.scheduled(&controller.cron, controller.scheduled_time_ms))
            .unwrap_or_else(|| Err(NOT_INITIALISED.to_string()));
        engine::with(|engine| engine.finish_event());
        result
    }
}

bindings::export!(Component with_types_in bindings);
