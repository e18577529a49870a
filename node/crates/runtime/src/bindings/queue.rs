//! The `queue` binding: a producer's `send` and `sendBatch`.
//!
//! The limits (message 128 KB, batch 100 messages and 256 KB, delay 12 h) are checked before
//! anything is proposed, so a refused batch stores nothing; an accepted one returns once it is
//! committed by a quorum, fsynced.

use super::nimbus::worker::queue as wit;
use super::{BindingError, Host};
use nimbus_proto::manifest::Binding;
use nimbus_queues::state::ContentType;
use nimbus_queues::{Outgoing, QueueError};

/// The one mapping from Queues' errors to what a guest sees.
fn binding_error(error: QueueError) -> BindingError {
    if error.is_client_error() {
        BindingError::InvalidInput(error.to_string())
    } else if error.is_retryable() {
        BindingError::Unavailable(error.to_string())
    } else {
        tracing::error!("queues: {error}");
        BindingError::Internal(error.to_string())
    }
}

fn content_type(kind: wit::ContentType) -> ContentType {
    match kind {
        wit::ContentType::Json => ContentType::Json,
        wit::ContentType::Text => ContentType::Text,
        wit::ContentType::Bytes => ContentType::Bytes,
        wit::ContentType::V8 => ContentType::V8,
    }
}

impl wit::Host for Host {
    async fn send_batch(&mut self, binding: String, messages: Vec<wit::OutgoingMessage>) -> Result<(), BindingError> {
        let queue = match self.declared.get(&binding, "queue")? {
            Binding::Queue { queue, .. } => queue.clone(),
            _ => return Err(BindingError::UnknownBinding(format!("binding `{binding}` is not a queue binding"))),
        };
        let messages: Vec<Outgoing> = messages
            .into_iter()
            .map(|m| Outgoing { body: m.body, content_type: content_type(m.content_type), delay_secs: m.delay_seconds })
            .collect();
        let queues = &self.stores.queues;
        match queues.send(&queue, messages.clone()).await {
            // A queue the deployment names is created at install; a send that comes first
            // (or after someone deleted it) creates it, as the binding promises it exists.
            Err(QueueError::NoSuchQueue(_)) => {
                queues.create_queue(&queue).await.map_err(binding_error)?;
                queues.send(&queue, messages).await.map(|_| ()).map_err(binding_error)
            }
            other => other.map(|_| ()).map_err(binding_error),
        }
    }
}
