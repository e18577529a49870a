//! Durable Object classes on wasmtime: the [`Workers`] table as [`nimbus_durable`] sees it.
//!
//! A class is the `nimbus:worker/durable-object` export of the worker that binds it; every
//! live object gets its own instance of the worker's component (its own memory, so an
//! object's globals are its in-memory state), created with the worker's limits. Each event
//! runs under the worker's CPU, memory and wall-time limits; a trap or a limit hit fails
//! that event and retires the instance, and the object's next event gets a fresh one.

use super::{Worker, Workers};
use crate::bindings::exports::nimbus::worker::durable_object::ObjectInfo;
use crate::bindings::nimbus::worker::websocket::Message;
use crate::bindings::{DurableClass, Host};
use nimbus_durable::Frame;
use nimbus_durable::{ClassHost, DurableError, Namespace, ObjectContext, ObjectInstance};
use nimbus_durable::{Event, EventOutcome, HttpMessage};
use std::sync::Arc;
use wasmtime::Store;

impl Worker {
    /// True if this worker binds `class_name` and exports the Durable Object handlers.
    fn runs_class(&self, class_name: &str) -> bool {
        self.durable_pre.is_some() && self.spec.manifest.durable_object_classes().contains(&class_name)
    }
}

#[async_trait::async_trait]
impl ClassHost for Workers {
    fn has_class(&self, namespace: &Namespace) -> bool {
        self.get(namespace.worker()).is_some_and(|w| w.runs_class(namespace.class_name()))
    }

    async fn instantiate(&self, context: ObjectContext) -> Result<Box<dyn ObjectInstance>, DurableError> {
        let unknown = || DurableError::UnknownClass(context.namespace.to_string());
        let worker = self.get(context.namespace.worker()).ok_or_else(unknown)?;
        if !worker.runs_class(context.namespace.class_name()) {
            return Err(unknown());
        }
        let pre = worker.durable_pre.clone().ok_or_else(unknown)?;
        let info = ObjectInfo { class_name: context.namespace.class_name().to_owned(), id: context.id.to_string() };
        let mut store = worker.new_store(Some(context));
        let class = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| DurableError::Handler(worker.classify(&store, e).to_string()))?;
        Ok(Box::new(ObjectRunner { worker, store, class, info }))
    }
}

/// One object's instance of its class.
struct ObjectRunner {
    worker: Arc<Worker>,
    store: Store<Host>,
    class: DurableClass,
    info: ObjectInfo,
}

#[async_trait::async_trait]
impl ObjectInstance for ObjectRunner {
    async fn run(&mut self, event: &Event) -> Result<EventOutcome, DurableError> {
        let ObjectRunner { worker, store, class, info } = self;
        store.data_mut().cpu.reset(worker.limits.cpu);
        store.data_mut().memory.hit = false;
        store.set_epoch_deadline(1);
        let handlers = class.nimbus_worker_durable_object();
        let call = async {
            match event {
                Event::Fetch(request) => {
                    let request = crate::bindings::nimbus::worker::durable_objects::HttpRequest {
                        method: request.method.clone(),
                        url: request.url.clone(),
                        headers: request.headers.clone(),
                        body: request.body.clone(),
                    };
                    let response = handlers.call_fetch(&mut *store, info, &request).await?;
                    Ok(EventOutcome::Response(HttpMessage {
                        status: response.status,
                        headers: response.headers,
                        body: response.body,
                        ..HttpMessage::default()
                    }))
                }
                Event::Alarm { retry, .. } => Ok(match handlers.call_alarm(&mut *store, info, *retry).await? {
                    Ok(()) => EventOutcome::AlarmDone,
                    Err(reason) => EventOutcome::AlarmFailed(reason),
                }),
                Event::SocketMessage { socket, frame } => {
                    let message = match frame {
                        Frame::Text(text) => Message::Text(text.clone()),
                        Frame::Binary(bytes) => Message::Binary(bytes.clone()),
                        Frame::Close { .. } => return Ok(EventOutcome::Delivered),
                    };
                    handlers.call_websocket_message(&mut *store, info, *socket, &message).await?;
                    Ok(EventOutcome::Delivered)
                }
                Event::SocketClose { socket, code, reason } => {
                    handlers.call_websocket_close(&mut *store, info, *socket, *code, reason).await?;
                    Ok(EventOutcome::Delivered)
                }
            }
        };
        let timed = tokio::time::timeout(worker.limits.wall, call).await;
        store.data_mut().release_r2_bodies();
        let outcome: Result<EventOutcome, wasmtime::Error> = match timed {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(DurableError::Handler(format!(
                    "Durable Object {} ran past the wall-time limit of {} ms",
                    info.class_name,
                    worker.limits.wall.as_millis()
                )))
            }
        };
        outcome.map_err(|e| DurableError::Handler(worker.classify(store, e).to_string()))
    }
}
