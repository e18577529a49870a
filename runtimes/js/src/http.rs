//! `wasi:http` at the edges of the engine: the incoming request (its body left as a stream
//! for the script to read or hand on), the response (bytes, or a host stream spliced into
//! it), and outbound `fetch()`.

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};
use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};

/// An HTTP request as the JS side sees it: absolute URL, headers, and its body as bytes or,
/// for the request the node hands the worker, as a stream ([`crate::body`]).
pub struct Incoming {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub stream: Option<u32>,
}

/// An HTTP response: its body is `body`, or the host stream `stream` when there is one.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub stream: Option<u32>,
}

impl Reply {
    pub fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: format!("{message}\n").into_bytes(),
            stream: None,
        }
    }
}

pub fn read_request(request: IncomingRequest) -> Result<Incoming, String> {
    let method = method_name(request.method());
    let scheme = match request.scheme() {
        Some(Scheme::Https) => "https".to_string(),
        Some(Scheme::Other(other)) => other,
        Some(Scheme::Http) | None => "http".to_string(),
    };
    let headers = lossy_headers(request.headers().entries());
    let authority = request
        .authority()
        .or_else(|| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("host")).map(|(_, v)| v.clone()))
        .unwrap_or_else(|| "localhost".to_string());
    let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
    let body_resource = request.consume().map_err(|()| "request body already consumed".to_string())?;
    let stream = body_resource.stream().map_err(|()| "request body stream unavailable".to_string())?;
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let stream = if matches!(method.as_str(), "GET" | "HEAD") || length == Some(0) {
        drop(stream);
        IncomingBody::finish(body_resource);
        None
    } else {
        Some(crate::body::open(stream, length, Some(body_resource)))
    };
    Ok(Incoming { method, url: format!("{scheme}://{authority}{path}"), headers, body: Vec::new(), stream })
}

/// Sends `reply`, then runs `after` (the event's `waitUntil` work) once the body is out.
pub fn send_response(reply: Reply, out: ResponseOutparam, after: impl FnOnce()) {
    let source = reply.stream.and_then(crate::body::take);
    let headers = Fields::new();
    let length = match &source {
        Some((_, length)) => *length,
        None => Some(reply.body.len() as u64),
    };
    if let Some(length) = length {
        if !reply.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
            let _ = headers.append("content-length", length.to_string().as_bytes());
        }
    }
    for (name, value) in &reply.headers {
        // A header the host refuses (`connection`, a bad name) is dropped, not fatal.
        let _ = headers.append(name, value.as_bytes());
    }
    let outgoing = OutgoingResponse::new(headers);
    let _ = outgoing.set_status_code(reply.status);
    let Ok(body) = outgoing.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(outgoing));
    let whole = match body.write() {
        Ok(stream) => match source {
            // A write error means the client went away; nobody is left to tell.
            None => {
                let _ = write_all(&stream, &reply.body);
                true
            }
            Some((input, _)) => splice_all(&stream, &input),
        },
        Err(()) => true,
    };
    if whole {
        let _ = OutgoingBody::finish(body, None);
    } else {
        // Dropped unfinished, the body ends as an error: the client cannot take a truncated
        // body for a whole one.
        drop(body);
    }
    after();
}

/// Moves `input` into `output` inside the host, a slice at a time; false when `input` failed.
fn splice_all(output: &OutputStream, input: &InputStream) -> bool {
    loop {
        match output.blocking_splice(input, 1 << 20) {
            Ok(_) => {}
            // The input ended, or the client went away.
            Err(StreamError::Closed) => {
                let _ = output.blocking_flush();
                return true;
            }
            Err(StreamError::LastOperationFailed(e)) => {
                crate::bindings::nimbus::worker::console::log(
                    crate::bindings::nimbus::worker::console::Level::Error,
                    &format!("the response body failed midway: {}", e.to_debug_string()),
                );
                return false;
            }
        }
    }
}

/// Outbound `fetch()`: the node lets it through only to the worker's allowed hosts.
pub fn fetch(request: Incoming) -> Result<Reply, String> {
    let (scheme, rest) = match request.url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("fetch: unsupported URL `{}` (only http: and https:)", request.url)),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => rest.split_at(i),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let fields = Fields::new();
    for (name, value) in &request.headers {
        fields.append(name, value.as_bytes()).map_err(|e| format!("fetch: header `{name}`: {e:?}"))?;
    }
    let outgoing = OutgoingRequest::new(fields);
    outgoing
        .set_method(&method_of(&request.method))
        .map_err(|()| format!("fetch: invalid method `{}`", request.method))?;
    outgoing.set_scheme(Some(&scheme)).map_err(|()| "fetch: invalid scheme".to_string())?;
    outgoing.set_authority(Some(authority)).map_err(|()| format!("fetch: invalid host `{authority}`"))?;
    outgoing.set_path_with_query(Some(&path)).map_err(|()| format!("fetch: invalid path `{path}`"))?;
    let body = outgoing.body().map_err(|()| "fetch: request body unavailable".to_string())?;
    {
        let stream = body.write().map_err(|()| "fetch: request body stream unavailable".to_string())?;
        write_all(&stream, &request.body)?;
    }
    OutgoingBody::finish(body, None).map_err(|e| format!("fetch: finishing the request body: {e:?}"))?;
    let pending = outgoing_handler::handle(outgoing, None).map_err(|e| format!("fetch to {}: {e:?}", request.url))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(format!("fetch to {}: {e:?}", request.url)),
        Some(Err(())) | None => return Err("fetch: the response was already taken".to_string()),
    };
    let status = response.status();
    let headers = lossy_headers(response.headers().entries());
    let incoming = response.consume().map_err(|()| "fetch: response body unavailable".to_string())?;
    let body = {
        let stream = incoming.stream().map_err(|()| "fetch: response body stream unavailable".to_string())?;
        read_all(&stream)?
    };
    Ok(Reply { status, headers, body, stream: None })
}

fn read_all(stream: &InputStream) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
}

fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        let (chunk, rest) = bytes.split_at(bytes.len().min(4096));
        stream.blocking_write_and_flush(chunk).map_err(|e| format!("{e:?}"))?;
        bytes = rest;
    }
    Ok(())
}

fn lossy_headers(entries: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    entries.into_iter().map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned())).collect()
}

fn method_name(method: Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other,
    }
}

fn method_of(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(name.to_string()),
    }
}
