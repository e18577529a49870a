//! Durable Objects: define a class, and reach objects from a worker.
//!
//! ```ignore
//! struct Counter { state: nimbus::State }
//!
//! impl nimbus::DurableObject for Counter {
//!     fn new(state: nimbus::State) -> Self { Counter { state } }
//!     fn fetch(&mut self, _req: nimbus::Request) -> nimbus::Result<nimbus::Response> {
//!         let n = self.state.storage.get_u64("count")?.unwrap_or(0) + 1;
//!         self.state.storage.put("count", n.to_string())?;
//!         Ok(nimbus::Response::text(n.to_string()))
//!     }
//! }
//!
//! nimbus::durable_objects!(Counter);
//! ```
//!
//! The node runs one instance of the component per live object, so a class's fields are the
//! object's in-memory state: they last while the object is active and are rebuilt by
//! [`DurableObject::new`] after it was evicted. Events arrive one at a time. Writes are
//! visible to the next read at once; the response of the event that made them is held until
//! they are on the object's replicas.
//!
//! From a worker, [`Namespace`] makes ids and [`Stub`]s: `Namespace::new("COUNTER")
//! .get_by_name("room-1").fetch(req)`.

use crate::generated::nimbus::worker::{durable_objects, storage, websocket};
use crate::{BindingError, Request, Response, Result};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A Durable Object class.
pub trait DurableObject: 'static {
    /// Builds the object when its first event arrives after activation (or after an
    /// eviction). Runs before any event is delivered (`blockConcurrencyWhile`).
    fn new(state: State) -> Self
    where
        Self: Sized;

    fn fetch(&mut self, req: Request) -> Result<Response>;

    /// The alarm set with [`Storage::set_alarm`] is due. An error is retried with backoff
    /// (up to six times); `retry_count` says which attempt this is.
    fn alarm(&mut self, retry_count: u32) -> Result<()> {
        let _ = retry_count;
        Ok(())
    }

    /// A client sent `message` on a WebSocket this object accepted. The object may have been
    /// evicted since (hibernation): then it was rebuilt with [`DurableObject::new`] first.
    fn websocket_message(&mut self, socket: WebSocket, message: Message) -> Result<()> {
        let _ = (socket, message);
        Ok(())
    }

    /// The client closed the socket (1006: it went away without a close frame).
    fn websocket_close(&mut self, socket: WebSocket, code: u16, reason: String) -> Result<()> {
        let _ = (socket, code, reason);
        Ok(())
    }
}

pub use websocket::Message;

/// A WebSocket the object accepted; it stays open while the object hibernates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WebSocket {
    pub id: u64,
}

impl WebSocket {
    /// Sends once the running event's writes are confirmed (the output gate).
    pub fn send_text(&self, text: &str) -> Result<(), BindingError> {
        websocket::send(self.id, &Message::Text(text.to_string()))
    }

    pub fn send_binary(&self, bytes: &[u8]) -> Result<(), BindingError> {
        websocket::send(self.id, &Message::Binary(bytes.to_vec()))
    }

    pub fn close(&self, code: u16, reason: &str) -> Result<(), BindingError> {
        websocket::close(self.id, code, reason)
    }

    pub fn tags(&self) -> Result<Vec<String>, BindingError> {
        websocket::tags(self.id)
    }
}

impl State {
    /// Accepts the WebSocket the running `fetch` asks for (see
    /// [`Request::is_websocket_upgrade`]); answer the fetch with [`Response::switching_protocols`].
    pub fn accept_websocket(&self, tags: &[&str]) -> Result<WebSocket, BindingError> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        Ok(WebSocket { id: websocket::accept(&tags)? })
    }

    /// The object's open WebSockets (with `tag` only, when given).
    pub fn websockets(&self, tag: Option<&str>) -> Result<Vec<WebSocket>, BindingError> {
        Ok(websocket::sockets(tag)?.into_iter().map(|id| WebSocket { id }).collect())
    }
}

/// What an object knows about itself, and its WebSockets.
pub struct State {
    /// 64 hex characters.
    pub id: String,
    pub class_name: String,
    pub storage: Storage,
}

/// The object's transactional storage.
pub struct Storage {
    _private: (),
}

/// Which keys [`Storage::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub start: Option<String>,
    pub end: Option<String>,
    pub prefix: Option<String>,
    pub reverse: bool,
    pub limit: Option<u32>,
}

impl Storage {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BindingError> {
        Ok(storage::get(&[key.to_string()])?.pop().flatten())
    }

    /// A UTF-8 value parsed as an integer (`None` if absent or not a number).
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, BindingError> {
        Ok(self.get(key)?.and_then(|v| String::from_utf8(v).ok()).and_then(|s| s.trim().parse().ok()))
    }

    /// Up to 128 keys at once.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, BindingError> {
        storage::get(&keys.iter().map(|k| k.to_string()).collect::<Vec<_>>())
    }

    pub fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), BindingError> {
        storage::write(&[storage::StorageWrite::Put((key.to_string(), value.into()))])
    }

    /// Up to 128 entries, all written or none.
    pub fn put_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), BindingError> {
        storage::write(&entries.into_iter().map(storage::StorageWrite::Put).collect::<Vec<_>>())
    }

    pub fn delete(&self, key: &str) -> Result<(), BindingError> {
        storage::write(&[storage::StorageWrite::Delete(key.to_string())])
    }

    pub fn delete_many(&self, keys: &[&str]) -> Result<(), BindingError> {
        storage::write(&keys.iter().map(|k| storage::StorageWrite::Delete(k.to_string())).collect::<Vec<_>>())
    }

    pub fn list(&self, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>, BindingError> {
        storage::list(&storage::ListOptions {
            start: options.start.clone(),
            end: options.end.clone(),
            prefix: options.prefix.clone(),
            reverse: options.reverse,
            limit: options.limit,
        })
    }

    /// Runs `body` with a transaction: its writes apply together if it returns `Ok`, and
    /// not at all if it returns an error (which is passed on).
    pub fn transaction<T>(&self, body: impl FnOnce(&mut Transaction) -> Result<T>) -> Result<T> {
        let mut txn = Transaction { writes: Vec::new(), overlay: BTreeMap::new() };
        let value = body(&mut txn)?;
        if !txn.writes.is_empty() {
            storage::write(&txn.writes)?;
        }
        Ok(value)
    }

    /// Deletes every key and the alarm.
    pub fn delete_all(&self) -> Result<(), BindingError> {
        storage::delete_all()
    }

    /// When the alarm is set for, in ms since the Unix epoch.
    pub fn get_alarm(&self) -> Result<Option<i64>, BindingError> {
        storage::get_alarm()
    }

    pub fn set_alarm(&self, scheduled_ms: i64) -> Result<(), BindingError> {
        storage::set_alarm(Some(scheduled_ms))
    }

    pub fn delete_alarm(&self) -> Result<(), BindingError> {
        storage::set_alarm(None)
    }
}

/// Writes that apply together (see [`Storage::transaction`]); reads see them.
pub struct Transaction {
    writes: Vec<storage::StorageWrite>,
    overlay: BTreeMap<String, Option<Vec<u8>>>,
}

impl Transaction {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BindingError> {
        match self.overlay.get(key) {
            Some(value) => Ok(value.clone()),
            None => Ok(storage::get(&[key.to_string()])?.pop().flatten()),
        }
    }

    pub fn put(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        self.overlay.insert(key.to_string(), Some(value.clone()));
        self.writes.push(storage::StorageWrite::Put((key.to_string(), value)));
    }

    pub fn delete(&mut self, key: &str) {
        self.overlay.insert(key.to_string(), None);
        self.writes.push(storage::StorageWrite::Delete(key.to_string()));
    }
}

/// The Durable Object binding of a worker (`[[durable_objects.bindings]]`).
pub struct Namespace {
    binding: String,
}

impl Namespace {
    pub fn new(binding: &str) -> Self {
        Namespace { binding: binding.to_string() }
    }

    pub fn id_from_name(&self, name: &str) -> Result<String, BindingError> {
        durable_objects::id_from_name(&self.binding, name)
    }

    pub fn new_unique_id(&self) -> Result<String, BindingError> {
        durable_objects::new_unique_id(&self.binding)
    }

    /// Checks an id a client handed back (64 hex characters of this namespace).
    pub fn id_from_string(&self, id: &str) -> Result<String, BindingError> {
        durable_objects::id_from_string(&self.binding, id)
    }

    pub fn get(&self, id: &str) -> Stub {
        Stub { binding: self.binding.clone(), id: id.to_string() }
    }

    pub fn get_by_name(&self, name: &str) -> Result<Stub, BindingError> {
        Ok(self.get(&self.id_from_name(name)?))
    }
}

/// Calls one object, wherever in the cluster it lives.
pub struct Stub {
    binding: String,
    id: String,
}

impl Stub {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn fetch(&self, req: &Request) -> Result<Response, BindingError> {
        let request = durable_objects::HttpRequest {
            method: req.method.clone(),
            url: format!("http://{}{}", req.authority.as_deref().unwrap_or("durable-object"), req.path),
            headers: req.headers.iter().map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned())).collect(),
            body: req.body.clone(),
        };
        let response = durable_objects::fetch(&self.binding, &self.id, &request)?;
        Ok(Response {
            status: response.status,
            headers: response.headers.into_iter().map(|(n, v)| (n, v.into_bytes())).collect(),
            body: response.body,
            stream: None,
        })
    }
}

#[doc(hidden)]
pub mod __export {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "nimbus:worker/durable-class",
        with: {
            "nimbus:worker/types@0.1.0": crate::generated::nimbus::worker::types,
            "nimbus:worker/kv@0.1.0": crate::generated::nimbus::worker::kv,
            "nimbus:worker/d1@0.1.0": crate::generated::nimbus::worker::d1,
            "nimbus:worker/durable-objects@0.1.0": crate::generated::nimbus::worker::durable_objects,
            "nimbus:worker/storage@0.1.0": crate::generated::nimbus::worker::storage,
            "nimbus:worker/websocket@0.1.0": crate::generated::nimbus::worker::websocket,
            "nimbus:worker/r2@0.1.0": crate::generated::nimbus::worker::r2,
            "nimbus:worker/queue@0.1.0": crate::generated::nimbus::worker::queue,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
        },
        pub_export_macro: true,
        export_macro_name: "export_durable_class",
        default_bindings_module: "nimbus::durable::__export",
    });

    pub use exports::nimbus::worker::durable_object::{Guest, ObjectInfo};
}

/// A constructor of one class, as [`durable_objects!`](crate::durable_objects) lists them.
#[doc(hidden)]
pub type Constructor = fn(State) -> Box<dyn DurableObject>;

#[doc(hidden)]
pub fn construct<T: DurableObject>(state: State) -> Box<dyn DurableObject> {
    Box::new(T::new(state))
}

thread_local! {
    /// The object this instance runs for (the node gives every live object its own instance).
    static LIVE: RefCell<Option<(String, Box<dyn DurableObject>)>> = const { RefCell::new(None) };
}

/// Runs `f` on the object `info` names, constructing it on its first event.
fn with_object<R>(
    info: &__export::ObjectInfo,
    classes: &[(&str, Constructor)],
    f: impl FnOnce(&mut dyn DurableObject) -> R,
) -> std::result::Result<R, String> {
    LIVE.with(|live| {
        let mut live = live.borrow_mut();
        if live.as_ref().is_none_or(|(id, _)| *id != info.id) {
            let Some((_, constructor)) = classes.iter().find(|(name, _)| *name == info.class_name) else {
                let known: Vec<&str> = classes.iter().map(|(name, _)| *name).collect();
                return Err(format!(
                    "this worker defines no Durable Object class `{}` (it defines: {})",
                    info.class_name,
                    known.join(", ")
                ));
            };
            let state =
                State { id: info.id.clone(), class_name: info.class_name.clone(), storage: Storage { _private: () } };
            *live = Some((info.id.clone(), constructor(state)));
        }
        let (_, object) = live.as_mut().ok_or("object missing")?;
        Ok(f(object.as_mut()))
    })
}

#[doc(hidden)]
pub fn __fetch(
    info: __export::ObjectInfo,
    request: durable_objects::HttpRequest,
    classes: &[(&str, Constructor)],
) -> durable_objects::HttpResponse {
    let path = match request.url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/".to_string(), |i| rest[i..].to_string()),
        None => request.url.clone(),
    };
    let req = Request {
        method: request.method,
        path,
        authority: None,
        headers: request.headers.into_iter().map(|(n, v)| (n, v.into_bytes())).collect(),
        body: request.body,
        body_stream: None,
    };
    let mut response = match with_object(&info, classes, |object| object.fetch(req)) {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => Response::new(500, format!("Durable Object error: {e}\n")),
        Err(e) => Response::new(500, format!("{e}\n")),
    };
    // An object's answer crosses to its caller whole.
    if let Some(mut stream) = response.stream.take() {
        let mut body = Vec::new();
        if let Err(e) = std::io::Read::read_to_end(&mut stream, &mut body) {
            response = Response::new(500, format!("reading the response body: {e}\n"));
        } else {
            response.body = body;
        }
    }
    durable_objects::HttpResponse {
        status: response.status,
        headers: response.headers.into_iter().map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned())).collect(),
        body: response.body,
    }
}

#[doc(hidden)]
pub fn __websocket_message(info: __export::ObjectInfo, socket: u64, message: Message, classes: &[(&str, Constructor)]) {
    if let Ok(Err(e)) =
        with_object(&info, classes, |object| object.websocket_message(WebSocket { id: socket }, message))
    {
        eprintln!("Durable Object {}: websocket_message failed: {e}", info.class_name);
    }
}

#[doc(hidden)]
pub fn __websocket_close(
    info: __export::ObjectInfo,
    socket: u64,
    code: u16,
    reason: String,
    classes: &[(&str, Constructor)],
) {
    if let Ok(Err(e)) =
        with_object(&info, classes, |object| object.websocket_close(WebSocket { id: socket }, code, reason))
    {
        eprintln!("Durable Object {}: websocket_close failed: {e}", info.class_name);
    }
}

#[doc(hidden)]
pub fn __alarm(
    info: __export::ObjectInfo,
    retry_count: u32,
    classes: &[(&str, Constructor)],
) -> std::result::Result<(), String> {
    with_object(&info, classes, |object| object.alarm(retry_count))?.map_err(|e| e.to_string())
}

/// Exports the listed [`DurableObject`] types as the component's Durable Object classes
/// (each under its type name, which `class_name` in `nimbus.toml` refers to).
#[macro_export]
macro_rules! durable_objects {
    ($($class:ident),+ $(,)?) => {
        #[doc(hidden)]
        pub struct __NimbusDurableClasses;

        impl __NimbusDurableClasses {
            const CLASSES: &'static [(&'static str, $crate::durable::Constructor)] =
                &[$((stringify!($class), $crate::durable::construct::<$class>)),+];
        }

        impl $crate::durable::__export::Guest for __NimbusDurableClasses {
            fn fetch(
                object: $crate::durable::__export::ObjectInfo,
                request: $crate::durable_objects::HttpRequest,
            ) -> $crate::durable_objects::HttpResponse {
                $crate::durable::__fetch(object, request, Self::CLASSES)
            }

            fn alarm(object: $crate::durable::__export::ObjectInfo, retry_count: u32) -> ::std::result::Result<(), String> {
                $crate::durable::__alarm(object, retry_count, Self::CLASSES)
            }

            fn websocket_message(
                object: $crate::durable::__export::ObjectInfo,
                socket: u64,
                message: $crate::websocket::Message,
            ) {
                $crate::durable::__websocket_message(object, socket, message, Self::CLASSES)
            }

            fn websocket_close(
                object: $crate::durable::__export::ObjectInfo,
                socket: u64,
                code: u16,
                reason: String,
            ) {
                $crate::durable::__websocket_close(object, socket, code, reason, Self::CLASSES)
            }
        }

        $crate::durable::__export::export_durable_class!(__NimbusDurableClasses with_types_in $crate::durable::__export);
    };
}
