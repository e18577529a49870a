//! Queues' one error enum: what a producer, a consumer or an operator should do.

use super::state::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error(
        "queue names are 1 to 63 lowercase letters, digits, `-` and `_`, starting with a letter or digit; got {0:?}"
    )]
    InvalidQueueName(String),
    #[error("no queue {0}")]
    NoSuchQueue(String),
    #[error("queue {0} already exists")]
    QueueExists(String),
    #[error("queue {0} has no consumer")]
    NoConsumer(String),
    #[error("queue {0}: {1}")]
    WrongConsumer(String, String),
    #[error("no lease {0}: it was settled, or it expired and its messages were given back")]
    NoSuchLease(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("cron run already claimed")]
    Claimed,
    #[error("the queue has as many batches in flight as its max_concurrency allows")]
    Busy,
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl QueueError {
    pub fn is_client_error(&self) -> bool {
        !matches!(self, QueueError::Unavailable(_) | QueueError::Internal(_) | QueueError::Busy)
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_) | QueueError::Busy)
    }
}

impl From<Refusal> for QueueError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NoSuchQueue(name) => QueueError::NoSuchQueue(name),
            Refusal::QueueExists(name) => QueueError::QueueExists(name),
            Refusal::NoConsumer(name) => QueueError::NoConsumer(name),
            Refusal::WrongConsumer(name) => {
                QueueError::WrongConsumer(name, "its consumer is of another kind (a worker's, or HTTP pull)".into())
            }
            Refusal::NoSuchLease(id) => QueueError::NoSuchLease(id),
            Refusal::Busy => QueueError::Busy,
            Refusal::Claimed => QueueError::Claimed,
            Refusal::Malformed(why) => QueueError::Internal(format!("a queues command did not decode: {why}")),
        }
    }
}
