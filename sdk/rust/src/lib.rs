//! The Nimbus guest SDK: write a worker as a Rust function from [`Request`] to [`Response`].
//!
//! ```ignore
//! struct Hello;
//!
//! impl nimbus::Handler for Hello {
//!     fn fetch(_req: nimbus::Request) -> nimbus::Result<nimbus::Response> {
//!         Ok(nimbus::Response::text("Hello from Nimbus!\n"))
//!     }
//! }
//!
//! nimbus::export!(Hello);
//! ```
//!
//! The component this builds (`cargo build --target wasm32-wasip2`) is a plain
//! `wasi:http/proxy` component plus whichever Nimbus bindings it calls, so one that
//! calls none runs unmodified under `wasmtime serve` too.
//!
//! # Layout
//! - [`Request`], [`Response`]: HTTP messages. A request's body is read whole before `fetch`
//!   runs (the node bounds it by the worker's `max_request_body`) unless the handler sets
//!   [`Handler::STREAM_REQUEST_BODY`]; a response's body is bytes or a stream
//!   ([`Response::from_stream`]) the host copies out without the guest touching it.
//! - [`kv`], [`d1`], [`durable_objects`], [`r2`]: the platform bindings, generated from `wit/`.
//!   A binding the deployment did not declare returns `BindingError::UnknownBinding`.
//! - [`Bucket`]: R2 as Cloudflare's binding shapes it (head / get / put / delete / list,
//!   multipart uploads), bodies streamed.
//! - [`D1Database`]: D1 as Cloudflare's API shapes it (prepare / bind / first / all / run /
//!   raw, batch, exec, sessions with bookmarks).
//! - [`durable`]: Durable Object classes ([`DurableObject`], exported with
//!   [`durable_objects!`]) and stubs to call objects from a worker.
//! - [`queue`]: queue producers ([`Queue`]), consumers ([`QueueConsumer`], exported with
//!   [`queue_consumer!`]) and Cron Triggers ([`Scheduled`], exported with [`scheduled!`]).
//! - [`export!`]: turns a [`Handler`] into the component's `wasi:http/incoming-handler`.

use std::io::{Read, Write};

#[doc(hidden)]
pub use wasip2 as wasi;

mod generated {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "nimbus:worker/bindings",
        // R2's bodies are the same `wasi:io` streams as the HTTP bodies of `wasip2`.
        with: {
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
        },
        generate_all,
    });
}

pub use generated::nimbus::worker::{d1, durable_objects, kv, r2, storage, types::BindingError, websocket};
pub use wasi::io::streams::InputStream;

mod bucket;
pub mod queue;
pub use bucket::{Bucket, Got, MultipartUpload, ObjectBody};
pub use queue::{ContentType, MessageBatch, Queue, QueueConsumer, Scheduled, ScheduledController};
mod database;
pub mod durable;
pub use database::{D1Database, PreparedStatement, Row};
pub use durable::{DurableObject, State};

use std::cell::RefCell;
use wasi::http::types::{Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::StreamError;

/// What a handler returns when it fails; becomes a 500 with the message as body.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An incoming HTTP request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, e.g. `/items?limit=10`.
    pub path: String,
    pub authority: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body; empty when the handler streams it ([`Handler::STREAM_REQUEST_BODY`]).
    pub body: Vec<u8>,
    /// The body as a stream, when the handler streams it: read it (`std::io::Read`), hand it
    /// to R2 (`r2::Body::Stream`), or answer with it ([`Response::from_stream`]).
    pub body_stream: Option<InputStream>,
}

impl Request {
    /// The body's stream, if the handler streams bodies and nobody took it yet.
    pub fn take_body_stream(&mut self) -> Option<InputStream> {
        self.body_stream.take()
    }

    /// The length the client declared (`content-length`).
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }

    /// True when the client asks for a WebSocket (the edge marks such requests; a worker
    /// passes them to a Durable Object, which accepts the socket).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("x-nimbus-websocket-upgrade").is_some()
    }

    /// The region of the node the request entered the cluster through, as Cloudflare's
    /// `request.cf.colo` (the edge sets `x-nimbus-colo`; a client cannot).
    pub fn colo(&self) -> Option<&str> {
        self.header("x-nimbus-colo")
    }

    /// The first value of a header (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// An HTTP response: its body is `body`, or `stream` when there is one.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Copied into the response by the host, never through the guest's memory (an R2
    /// object's body, the request's own body).
    pub stream: Option<InputStream>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response { status, headers: Vec::new(), body: body.into(), stream: None }
    }

    /// A response whose body is `stream`, `length` bytes long when known (then sent as
    /// `content-length`; otherwise the body is chunked).
    pub fn from_stream(status: u16, stream: InputStream, length: Option<u64>) -> Self {
        let mut response = Response { status, headers: Vec::new(), body: Vec::new(), stream: Some(stream) };
        if let Some(length) = length {
            response.headers.push(("content-length".into(), length.to_string().into_bytes()));
        }
        response
    }

    /// A 200 with `content-type: text/plain; charset=utf-8`.
    pub fn text(body: impl Into<String>) -> Self {
        Response::new(200, body.into()).with_header("content-type", "text/plain; charset=utf-8")
    }

    /// A 200 with `content-type: application/json`; `json` must already be JSON text.
    pub fn json(json: impl Into<String>) -> Self {
        Response::new(200, json.into()).with_header("content-type", "application/json")
    }

    /// The answer of a Durable Object's `fetch` that accepted a WebSocket.
    pub fn switching_protocols() -> Self {
        Response::new(101, Vec::new())
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Sends an outbound HTTP request (`wasi:http/outgoing-handler`) and reads the whole response.
/// The node only lets it through to hosts in the worker's `allowed_outbound_hosts`.
pub fn fetch(method: &str, url: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Result<Response> {
    use wasi::http::types::{Method, OutgoingRequest, Scheme};
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("unsupported URL `{url}`: it must start with http:// or https://").into()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    for (name, value) in headers {
        fields.append(name, value).map_err(|e| format!("header `{name}`: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    let method = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    };
    request.set_method(&method).map_err(|()| "invalid method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "invalid scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "invalid authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "invalid path")?;
    let outgoing_body = request.body().map_err(|()| "request body unavailable")?;
    {
        let mut stream = outgoing_body.write().map_err(|()| "request body stream unavailable")?;
        stream.write_all(body)?;
        stream.flush()?;
    }
    OutgoingBody::finish(outgoing_body, None).map_err(|e| format!("finishing the request body: {e:?}"))?;
    let pending = wasi::http::outgoing_handler::handle(request, None).map_err(|e| format!("request refused: {e:?}"))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(format!("request failed: {e:?}").into()),
        Some(Err(())) | None => return Err("response already taken".into()),
    };
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response.consume().map_err(|()| "response body unavailable")?;
    let mut body = Vec::new();
    {
        let mut stream = incoming.stream().map_err(|()| "response body stream unavailable")?;
        stream.read_to_end(&mut body)?;
    }
    Ok(Response { status, headers, body, stream: None })
}

/// A worker: one function from request to response.
pub trait Handler {
    /// When true, the request's body is not read before `fetch`: it waits in
    /// [`Request::body_stream`], so a large upload can stream into R2 without passing
    /// through the worker's memory.
    const STREAM_REQUEST_BODY: bool = false;

    fn fetch(req: Request) -> Result<Response>;
}

/// Exports `$handler` (a type implementing [`Handler`]) as the component's HTTP handler.
#[macro_export]
macro_rules! export {
    ($handler:ty) => {
        #[doc(hidden)]
        pub struct __NimbusWorker;

        impl $crate::wasi::exports::http::incoming_handler::Guest for __NimbusWorker {
            fn handle(
                request: $crate::wasi::http::types::IncomingRequest,
                out: $crate::wasi::http::types::ResponseOutparam,
            ) {
                $crate::__serve::<$handler>(request, out)
            }
        }

        $crate::wasi::http::proxy::export!(__NimbusWorker with_types_in $crate::wasi);
    };
}

thread_local! {
    /// The request body a streamed request's stream belongs to: kept until the response is
    /// out, so the stream stays valid wherever the handler sent it.
    static REQUEST_BODY: RefCell<Option<IncomingBody>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub fn __serve<H: Handler>(request: IncomingRequest, out: ResponseOutparam) {
    let response = match read_request(request, H::STREAM_REQUEST_BODY) {
        Ok(req) => H::fetch(req).unwrap_or_else(|e| Response::new(500, format!("worker error: {e}\n"))),
        Err(e) => Response::new(400, format!("could not read the request: {e}\n")),
    };
    send_response(response, out);
    REQUEST_BODY.with(|body| body.borrow_mut().take());
}

fn read_request(request: IncomingRequest, stream_body: bool) -> Result<Request> {
    use wasi::http::types::Method;
    let method = match request.method() {
        Method::Get => "GET".to_string(),
        Method::Head => "HEAD".to_string(),
        Method::Post => "POST".to_string(),
        Method::Put => "PUT".to_string(),
        Method::Delete => "DELETE".to_string(),
        Method::Connect => "CONNECT".to_string(),
        Method::Options => "OPTIONS".to_string(),
        Method::Trace => "TRACE".to_string(),
        Method::Patch => "PATCH".to_string(),
        Method::Other(other) => other,
    };
    let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
    let authority = request.authority();
    let headers = request.headers().entries();
    let body_resource = request.consume().map_err(|()| "request body already consumed")?;
    let mut stream = body_resource.stream().map_err(|()| "request body stream unavailable")?;
    if stream_body {
        REQUEST_BODY.with(|body| *body.borrow_mut() = Some(body_resource));
        return Ok(Request { method, path, authority, headers, body: Vec::new(), body_stream: Some(stream) });
    }
    let mut body = Vec::new();
    stream.read_to_end(&mut body)?;
    drop(stream);
    IncomingBody::finish(body_resource);
    Ok(Request { method, path, authority, headers, body, body_stream: None })
}

fn send_response(response: Response, out: ResponseOutparam) {
    let headers = Fields::new();
    let declares_length = response.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if !declares_length && response.stream.is_none() {
        // The whole body is known: declaring it lets the host refuse an oversized one cleanly.
        let _ = headers.append("content-length", response.body.len().to_string().as_bytes());
    }
    for (name, value) in &response.headers {
        // A header the host refuses (e.g. `connection`) is dropped rather than failing the request.
        let _ = headers.append(name, value);
    }
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(outgoing));
    let whole = match body.write() {
        Ok(mut stream) => match &response.stream {
            None => {
                // A write error means the client went away; there is no one left to tell.
                let _ = stream.write_all(&response.body);
                let _ = stream.flush();
                true
            }
            Some(input) => splice_all(&stream, input),
        },
        Err(()) => true,
    };
    drop(response);
    if whole {
        let _ = OutgoingBody::finish(body, None);
    }
    // Otherwise the body is dropped unfinished, which ends the response as an error: a client
    // cannot take a truncated body for a whole one.
}

/// Moves `input` into `output` inside the host; false when `input` failed midway.
fn splice_all(output: &wasi::io::streams::OutputStream, input: &InputStream) -> bool {
    loop {
        match output.blocking_splice(input, 1 << 20) {
            Ok(_) => {}
            Err(StreamError::Closed) => {
                let _ = output.blocking_flush();
                return true;
            }
            Err(StreamError::LastOperationFailed(_)) => return false,
        }
    }
}
