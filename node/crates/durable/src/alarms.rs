//! The alarm scheduler: wakes objects whose alarm is due.
//!
//! Every holder indexes the alarms of the objects it holds (see [`super::storage`]), so the
//! alarm survives its owner. Every `alarm_poll_ms` a node reads the due entries of its index
//! and sends an alarm event for each through [`Durable::call`], which reaches the owner: at
//! once for the objects this node owns, after a grace second for the others (their owner
//! normally fires them first; this covers an owner that has never loaded the object, as
//! after a move). The owner runs the handler only if that alarm is still set and due, one
//! event at a time, so concurrent deliveries fire it once. A failed handler is retried with
//! exponential backoff from `alarm_retry_ms`, six times, as Cloudflare does; an index entry
//! whose object no longer has that alarm is dropped. The scheduler starts once the node has
//! published its first membership view.

use super::wire::{Event, EventOutcome};
use super::{Durable, Namespace, ObjectId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// How late a non-owner lets an alarm be before delivering it itself.
const GRACE_MS: i64 = 1_000;
/// Due alarms read per poll.
const BATCH: usize = 256;

#[derive(Default)]
struct Attempts {
    /// Alarms being delivered now.
    in_flight: std::collections::HashSet<ObjectId>,
    /// Failed alarms: the retries so far and when the next may go.
    retries: HashMap<ObjectId, (u32, Instant)>,
}

pub async fn run(durable: Durable, shutdown: CancellationToken) {
    // Nothing is delivered before the node's first membership view: until then it cannot
    // tell which alarms are its own to fire.
    let mut view = durable.inner.view.clone();
    tokio::select! {
        _ = shutdown.cancelled() => return,
        ready = view.wait_for(|view| view.ready) => {
            if ready.is_err() {
                return;
            }
        }
    }
    let attempts = Arc::new(Mutex::new(Attempts::default()));
    let mut poll = tokio::time::interval(durable.inner.settings.alarm_poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = poll.tick() => {}
        }
        let now = super::object::now_ms();
        let storage = durable.inner.storage.clone();
        let due = match tokio::task::spawn_blocking(move || storage.due_alarms(now, BATCH)).await {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::warn!("reading due alarms: {e}");
                continue;
            }
            Err(_) => continue,
        };
        let view = durable.view();
        for alarm in due {
            let owned = view.owns(&alarm.id);
            if !owned && alarm.at_ms + GRACE_MS > now {
                continue;
            }
            let retry = {
                let mut attempts = attempts.lock().unwrap_or_else(|p| p.into_inner());
                if attempts.in_flight.contains(&alarm.id) {
                    continue;
                }
                let retry = match attempts.retries.get(&alarm.id) {
                    Some((_, next)) if *next > Instant::now() => continue,
                    Some((retry, _)) => *retry,
                    None => 0,
                };
                attempts.in_flight.insert(alarm.id);
                retry
            };
            let Ok(namespace) = Namespace::parse(&alarm.namespace) else {
                let _ = durable.inner.storage.forget_alarm(&alarm);
                attempts.lock().unwrap_or_else(|p| p.into_inner()).in_flight.remove(&alarm.id);
                continue;
            };
            let (durable, attempts) = (durable.clone(), attempts.clone());
            tokio::spawn(async move {
                let event = Event::Alarm { at_ms: alarm.at_ms, retry };
                let outcome = durable.call(&namespace, alarm.id, event).await;
                let mut attempts = attempts.lock().unwrap_or_else(|p| p.into_inner());
                attempts.in_flight.remove(&alarm.id);
                match outcome {
                    Ok(EventOutcome::AlarmDone) => {
                        attempts.retries.remove(&alarm.id);
                    }
                    Ok(EventOutcome::AlarmNotDue(current)) => {
                        attempts.retries.remove(&alarm.id);
                        if current != Some(alarm.at_ms) {
                            if let Err(e) = durable.inner.storage.forget_alarm(&alarm) {
                                tracing::warn!("dropping a stale alarm: {e}");
                            }
                        }
                    }
                    failed => {
                        let reason = match failed {
                            Ok(EventOutcome::AlarmFailed(reason)) => reason,
                            Ok(other) => format!("unexpected outcome {other:?}"),
                            Err(e) => e.to_string(),
                        };
                        let delay = durable.inner.settings.alarm_retry * 2u32.saturating_pow(retry.min(16));
                        tracing::warn!(object = %alarm.id, retry, ?delay, "alarm failed: {reason}");
                        attempts.retries.insert(alarm.id, (retry + 1, Instant::now() + delay));
                    }
                }
            });
        }
    }
}
