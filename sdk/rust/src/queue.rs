//! Queues and Cron Triggers from Rust: a producer's [`Queue`], a consumer's
//! [`QueueConsumer`] (exported with [`queue_consumer!`](crate::queue_consumer)) and a cron
//! handler's [`Scheduled`] (exported with [`scheduled!`](crate::scheduled)).
//!
//! ```ignore
//! struct Mailer;
//! impl nimbus::QueueConsumer for Mailer {
//!     fn queue(batch: &nimbus::MessageBatch) -> nimbus::Result<()> {
//!         for message in batch.messages() {
//!             if send_mail(message.body())? { message.ack() } else { message.retry(Some(30)) }
//!         }
//!         Ok(())
//!     }
//! }
//! nimbus::queue_consumer!(Mailer);
//! ```
//!
//! Cloudflare's rules decide each message: the first explicit `ack` / `retry` on it wins, then
//! [`MessageBatch::ack_all`] / [`MessageBatch::retry_all`]; a handler that returns `Ok` acks
//! the rest, one that returns `Err` retries them.

use crate::generated::nimbus::worker::queue as wit;
use crate::BindingError;
use std::cell::Cell;

/// How a body is encoded (Cloudflare's `contentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Text,
    Bytes,
    V8,
}

impl ContentType {
    fn wit(self) -> wit::ContentType {
        match self {
            ContentType::Json => wit::ContentType::Json,
            ContentType::Text => wit::ContentType::Text,
            ContentType::Bytes => wit::ContentType::Bytes,
            ContentType::V8 => wit::ContentType::V8,
        }
    }

    fn parse(name: &str) -> ContentType {
        match name {
            "json" => ContentType::Json,
            "text" => ContentType::Text,
            "v8" => ContentType::V8,
            _ => ContentType::Bytes,
        }
    }
}

/// A queue producer binding (`[[queues.producers]] binding = "…"`).
#[derive(Debug, Clone)]
pub struct Queue {
    binding: String,
}

impl Queue {
    pub fn new(binding: &str) -> Queue {
        Queue { binding: binding.to_owned() }
    }

    /// Sends one message; returns once it is durable on a quorum of the cluster.
    pub fn send(&self, body: &[u8], content_type: ContentType, delay_seconds: Option<u32>) -> Result<(), BindingError> {
        self.send_batch(&[(body, content_type, delay_seconds)])
    }

    /// Sends a JSON text message body (`contentType: "json"`).
    pub fn send_json(&self, json: &str) -> Result<(), BindingError> {
        self.send(json.as_bytes(), ContentType::Json, None)
    }

    /// Sends up to 100 messages (256 KB together), all or none.
    pub fn send_batch(&self, messages: &[(&[u8], ContentType, Option<u32>)]) -> Result<(), BindingError> {
        let messages: Vec<wit::OutgoingMessage> = messages
            .iter()
            .map(|(body, content_type, delay)| wit::OutgoingMessage {
                body: body.to_vec(),
                content_type: content_type.wit(),
                delay_seconds: *delay,
            })
            .collect();
        wit::send_batch(&self.binding, &messages)
    }
}

/// What was decided for a message so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decided {
    Ack,
    Retry(Option<u32>),
}

/// A message of a batch.
#[derive(Debug)]
pub struct Message {
    id: String,
    timestamp_ms: u64,
    body: Vec<u8>,
    content_type: ContentType,
    attempts: u32,
    decided: Cell<Option<Decided>>,
}

impl Message {
    /// 32 hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When it was sent, milliseconds since the epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The body as sent (JSON text for `json` and `v8`).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// Deliveries so far, this one included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Acknowledges the message, unless a decision was made already.
    pub fn ack(&self) {
        self.decide(Decided::Ack);
    }

    /// Asks for the message again, after `delay_seconds` or by the consumer's backoff, unless
    /// a decision was made already.
    pub fn retry(&self, delay_seconds: Option<u32>) {
        self.decide(Decided::Retry(delay_seconds));
    }

    fn decide(&self, decision: Decided) {
        if self.decided.get().is_none() {
            self.decided.set(Some(decision));
        }
    }
}

/// The batch a consumer's `queue` handler receives.
#[derive(Debug)]
pub struct MessageBatch {
    queue: String,
    messages: Vec<Message>,
}

impl MessageBatch {
    pub fn queue(&self) -> &str {
        &self.queue
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Acknowledges every message not decided yet.
    pub fn ack_all(&self) {
        self.messages.iter().for_each(Message::ack);
    }

    /// Retries every message not decided yet.
    pub fn retry_all(&self, delay_seconds: Option<u32>) {
        self.messages.iter().for_each(|m| m.retry(delay_seconds));
    }
}

/// A queue consumer: the handler of the batches of the queues a worker consumes.
pub trait QueueConsumer {
    fn queue(batch: &MessageBatch) -> crate::Result<()>;
}

/// What a cron trigger's handler receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledController {
    /// The expression that fired, as written in `nimbus.toml`.
    pub cron: String,
    /// The tick, milliseconds since the epoch (UTC).
    pub scheduled_time_ms: u64,
}

/// A worker's Cron Trigger handler.
pub trait Scheduled {
    fn scheduled(controller: ScheduledController) -> crate::Result<()>;
}

#[doc(hidden)]
pub mod __consumer {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "nimbus:worker/queue-consumer",
        pub_export_macro: true,
        export_macro_name: "export_queue_consumer",
        default_bindings_module: "nimbus::queue::__consumer",
    });

    pub use exports::nimbus::worker::queue_handler::{Decision, Guest, Message, Outcome};
}

#[doc(hidden)]
pub mod __scheduled {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "nimbus:worker/scheduled-worker",
        pub_export_macro: true,
        export_macro_name: "export_scheduled",
        default_bindings_module: "nimbus::queue::__scheduled",
    });

    pub use exports::nimbus::worker::scheduled_handler::{Controller, Guest};
}

#[doc(hidden)]
pub fn __run_queue<C: QueueConsumer>(queue: String, messages: Vec<__consumer::Message>) -> __consumer::Outcome {
    let batch = MessageBatch {
        queue,
        messages: messages
            .into_iter()
            .map(|m| Message {
                id: m.id,
                timestamp_ms: m.timestamp_ms,
                body: m.body,
                content_type: ContentType::parse(&m.content_type),
                attempts: m.attempts,
                decided: Cell::new(None),
            })
            .collect(),
    };
    let result = C::queue(&batch);
    let fallback = if result.is_ok() { Decided::Ack } else { Decided::Retry(None) };
    __consumer::Outcome {
        decisions: batch
            .messages
            .iter()
            .map(|m| match m.decided.get().unwrap_or(fallback) {
                Decided::Ack => __consumer::Decision::Ack,
                Decided::Retry(delay) => __consumer::Decision::Retry(delay),
            })
            .collect(),
        error: result.err().map(|e| e.to_string()),
    }
}

#[doc(hidden)]
pub fn __run_scheduled<S: Scheduled>(controller: __scheduled::Controller) -> Result<(), String> {
    S::scheduled(ScheduledController { cron: controller.cron, scheduled_time_ms: controller.scheduled_time_ms })
        .map_err(|e| e.to_string())
}

/// Exports `$consumer` (a type implementing [`QueueConsumer`]) as the component's queue handler.
#[macro_export]
macro_rules! queue_consumer {
    ($consumer:ty) => {
        #[doc(hidden)]
        pub struct __NimbusQueueConsumer;

        impl $crate::queue::__consumer::Guest for __NimbusQueueConsumer {
            fn queue(
                queue: String,
                messages: Vec<$crate::queue::__consumer::Message>,
            ) -> $crate::queue::__consumer::Outcome {
                $crate::queue::__run_queue::<$consumer>(queue, messages)
            }
        }

        $crate::queue::__consumer::export_queue_consumer!(__NimbusQueueConsumer with_types_in $crate::queue::__consumer);
    };
}

/// Exports `$handler` (a type implementing [`Scheduled`]) as the component's cron handler.
#[macro_export]
macro_rules! scheduled {
    ($handler:ty) => {
        #[doc(hidden)]
        pub struct __NimbusScheduled;

        impl $crate::queue::__scheduled::Guest for __NimbusScheduled {
            fn scheduled(controller: $crate::queue::__scheduled::Controller) -> Result<(), String> {
                $crate::queue::__run_scheduled::<$handler>(controller)
            }
        }

        $crate::queue::__scheduled::export_scheduled!(__NimbusScheduled with_types_in $crate::queue::__scheduled);
    };
}
