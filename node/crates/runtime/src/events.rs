//! Queue batches and cron ticks on wasmtime: the [`Workers`] table as [`nimbus_queues`] sees
//! it.
//!
//! A worker's `queue-handler` and `scheduled-handler` exports are found when it is prepared
//! (a worker exports those it has). Each event runs on a fresh instance of the component with
//! the worker's CPU, memory and wall-time limits, and the worker's cap on events in flight;
//! a trap or a limit hit fails that event only (the batch is retried, the run recorded as
//! failed).

use super::bindings::events::{queue_handler, scheduled_handler};
use super::bindings::Host;
use super::{Worker, Workers};
use nimbus_proto::manifest::Binding;
use nimbus_queues::state::{Consumer, ConsumerKind, ConsumerSettings, Decision, Message};
use nimbus_queues::EventHost;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::InstancePre;
use wasmtime::Store;

/// The event handlers a component exports.
pub(crate) struct Handlers {
    queue: Option<queue_handler::GuestIndices>,
    scheduled: Option<scheduled_handler::GuestIndices>,
}

impl Handlers {
    pub(crate) fn find(pre: &InstancePre<Host>) -> Handlers {
        Handlers {
            queue: queue_handler::GuestIndices::new(pre).ok(),
            scheduled: scheduled_handler::GuestIndices::new(pre).ok(),
        }
    }
}

impl Worker {
    /// A fresh instance for one event, once a slot of the worker's cap is free.
    async fn event_instance(
        &self,
    ) -> Result<(Store<Host>, wasmtime::component::Instance, tokio::sync::OwnedSemaphorePermit), String> {
        let permit = self.concurrency.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let mut store = self.new_store(None);
        let instance =
            self.instance_pre.instantiate_async(&mut store).await.map_err(|e| self.classify(&store, e).to_string())?;
        Ok((store, instance, permit))
    }

    async fn run_queue(&self, queue: &str, messages: &[Message]) -> Result<Vec<Decision>, String> {
        let indices =
            self.events.queue.as_ref().ok_or_else(|| format!("worker `{}` has no queue handler", self.name))?;
        let (mut store, instance, _permit) = self.event_instance().await?;
        let guest = indices.load(&mut store, &instance).map_err(|e| e.to_string())?;
        let batch: Vec<queue_handler::Message> = messages
            .iter()
            .map(|m| queue_handler::Message {
                id: m.id.clone(),
                timestamp_ms: m.sent_ms,
                body: m.body.clone(),
                content_type: m.content_type.as_str().to_owned(),
                attempts: m.attempts,
            })
            .collect();
        let call = guest.call_queue(&mut store, queue, &batch);
        let outcome = tokio::time::timeout(self.limits.wall, call).await;
        store.data_mut().release_r2_bodies();
        let outcome = match outcome {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => return Err(self.classify(&store, e).to_string()),
            Err(_) => return Err(format!("ran past the wall-time limit of {} ms", self.limits.wall.as_millis())),
        };
        if let Some(error) = &outcome.error {
            tracing::warn!(worker = %self.name, queue, "queue handler threw: {error}");
        }
        if outcome.decisions.len() != messages.len() {
            return Err(format!(
                "the queue handler answered {} decisions for {} messages",
                outcome.decisions.len(),
                messages.len()
            ));
        }
        Ok(outcome
            .decisions
            .into_iter()
            .map(|d| match d {
                queue_handler::Decision::Ack => Decision::Ack,
                queue_handler::Decision::Retry(delay) => Decision::Retry(delay),
            })
            .collect())
    }

    async fn run_scheduled(&self, cron: &str, scheduled_ms: u64) -> Result<(), String> {
        let indices =
            self.events.scheduled.as_ref().ok_or_else(|| format!("worker `{}` has no scheduled handler", self.name))?;
        let (mut store, instance, _permit) = self.event_instance().await?;
        let guest = indices.load(&mut store, &instance).map_err(|e| e.to_string())?;
        let controller = scheduled_handler::Controller { cron: cron.to_owned(), scheduled_time_ms: scheduled_ms };
        let call = guest.call_scheduled(&mut store, &controller);
        let outcome = tokio::time::timeout(self.limits.wall, call).await;
        store.data_mut().release_r2_bodies();
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(self.classify(&store, e).to_string()),
            Err(_) => Err(format!("ran past the wall-time limit of {} ms", self.limits.wall.as_millis())),
        }
    }
}

fn settings(consumer: &nimbus_proto::manifest::QueueConsumer) -> ConsumerSettings {
    ConsumerSettings {
        max_batch_size: consumer.max_batch_size,
        max_batch_timeout_secs: consumer.max_batch_timeout,
        max_retries: consumer.max_retries,
        dead_letter_queue: consumer.dead_letter_queue.clone(),
        retry_delay_secs: consumer.retry_delay,
        max_concurrency: consumer.max_concurrency,
    }
}

#[async_trait::async_trait]
impl EventHost for Workers {
    async fn queue(&self, worker: &str, queue: &str, messages: &[Message]) -> Result<Vec<Decision>, String> {
        let found: Arc<Worker> = self.get(worker).ok_or_else(|| format!("worker `{worker}` is not installed here"))?;
        found.run_queue(queue, messages).await
    }

    async fn scheduled(&self, worker: &str, cron: &str, scheduled_ms: u64) -> Result<(), String> {
        let found: Arc<Worker> = self.get(worker).ok_or_else(|| format!("worker `{worker}` is not installed here"))?;
        found.run_scheduled(cron, scheduled_ms).await
    }

    fn has_worker(&self, worker: &str) -> bool {
        self.get(worker).is_some()
    }

    fn crons(&self) -> Vec<(String, String)> {
        let installed = self.snapshot();
        let mut crons: Vec<(String, String)> = installed
            .workers
            .values()
            .flat_map(|w| w.spec.manifest.crons.iter().map(|c| (w.spec.name.clone(), c.clone())))
            .collect();
        crons.sort();
        crons.dedup();
        crons
    }

    fn declared(&self) -> Vec<(String, Option<Consumer>)> {
        let installed = self.snapshot();
        let mut workers: Vec<&Arc<Worker>> = installed.workers.values().collect();
        workers.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        let mut queues: BTreeMap<String, Option<Consumer>> = BTreeMap::new();
        for worker in workers {
            for binding in &worker.spec.manifest.bindings {
                if let Binding::Queue { queue, .. } = binding {
                    queues.entry(queue.clone()).or_default();
                }
            }
            for consumer in &worker.spec.manifest.queue_consumers {
                let slot = queues.entry(consumer.queue.clone()).or_default();
                match slot {
                    // Workers are in name order: the first one to consume a queue keeps it.
                    Some(Consumer { kind: ConsumerKind::Worker(first), .. }) => tracing::warn!(
                        queue = %consumer.queue, consumer = %first, ignored = %worker.spec.name,
                        "two workers consume one queue; the first by name does"
                    ),
                    _ => {
                        *slot = Some(Consumer {
                            kind: ConsumerKind::Worker(worker.spec.name.clone()),
                            settings: settings(consumer),
                        })
                    }
                }
            }
        }
        queues.into_iter().collect()
    }
}
