//! The two loops every node runs.
//!
//! - **The dispatcher** acts on the leader only. Once per `poll_ms` it creates the queues the
//!   installed workers name and sets the consumers they declare. Each round it reads the
//!   replicated state:
//!   it commits `Expire` when a lease is past its deadline (or a message past retention);
//!   for every queue with a worker consumer it commits a `Lease` when a full batch is due,
//!   or when the oldest due message has waited `max_batch_timeout`, while fewer than
//!   `max_concurrency` leases are out; the lease's holder is a live member chosen by
//!   rendezvous on the lease id, so batches spread over the nodes. Then it claims the cron
//!   ticks that are due. It sleeps until the next thing falls due, or until a command is
//!   applied.
//! - **The runner** acts on every node: it runs the leases and cron runs the state says this
//!   node holds, then commits their `Settle` / `Outcome`. A holder that dies never settles;
//!   its lease expires and is leased again.
//!
//! Neither keeps anything but the state: after a failover the new leader's dispatcher starts
//! from the replicated state, and a restarted node finds its leases in it.

use super::state::{Command, Decision, Lease, Reply, Run, RunStatus};
use super::{fresh_id, now_ms, QueueError, Queues};
use nimbus_proto::cron::{real_time, schedule_time, Schedule};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Cron ticks one round claims at most per (worker, cron); more wait for the next round.
const TICKS_PER_ROUND: usize = 20;

impl Queues {
    /// The dispatcher (see the module's header), until shutdown.
    pub async fn dispatch(self, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.inner.config.poll_ms.max(10));
        let mut changes = self.inner.state.changes();
        let mut schedules: HashMap<String, Option<Schedule>> = HashMap::new();
        // Deployments change rarely and apply no command: the queues and consumers they
        // declare are reconciled once per `poll_ms`, not on every applied command.
        let mut reconciled: Option<std::time::Instant> = None;
        loop {
            let mut wake = now_ms() + poll.as_millis() as u64;
            if self.inner.log.leads() {
                if reconciled.is_none_or(|at| at.elapsed() >= poll) {
                    match self.reconcile().await {
                        Ok(()) => reconciled = Some(std::time::Instant::now()),
                        Err(e) => tracing::warn!("queues dispatcher: {e}"),
                    }
                }
                match self.dispatch_round(&mut schedules).await {
                    Ok(next) => wake = wake.min(next),
                    Err(e) => tracing::warn!("queues dispatcher: {e}"),
                }
            }
            let sleep = Duration::from_millis(wake.saturating_sub(now_ms()).max(1));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = changes.changed() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// One round of the dispatcher; when the next thing falls due.
    async fn dispatch_round(&self, schedules: &mut HashMap<String, Option<Schedule>>) -> Result<u64, QueueError> {
        let config = &self.inner.config;
        let state = &self.inner.state;
        let now = now_ms();
        let mut next = u64::MAX;

        let retention_ms = config.retention_secs.saturating_mul(1000);
        let expiry = state.next_expiry()?;
        if expiry.is_some_and(|t| t <= now) || state.has_older_than(now.saturating_sub(retention_ms))? {
            match self.propose(Command::Expire { time_ms: now, retention_ms }).await? {
                Reply::Expired { leases, returned, settled, retention_dropped }
                    if leases > 0 || retention_dropped > 0 =>
                {
                    tracing::info!(leases, returned, ?settled, retention_dropped, "queue leases expired");
                }
                _ => {}
            }
        } else if let Some(at) = expiry {
            next = next.min(at);
        }

        for pending in state.pending(now)? {
            let settings = &pending.settings;
            if !self.inner.host.has_worker(&pending.worker) {
                continue;
            }
            if let Some(at) = pending.next_due_ms {
                next = next.min(at);
            }
            if pending.due == 0 || pending.leases >= settings.max_concurrency {
                continue;
            }
            let timeout_at = pending.oldest_due_ms.unwrap_or(now) + u64::from(settings.max_batch_timeout_secs) * 1000;
            if pending.due < settings.max_batch_size && timeout_at > now {
                next = next.min(timeout_at);
                continue;
            }
            let lease = fresh_id();
            let holder = self.pick_holder(&lease).await;
            let command = Command::Lease {
                queue: pending.queue.clone(),
                lease,
                holder,
                max: settings.max_batch_size,
                time_ms: now,
                until_ms: now + config.lease_ms,
            };
            match self.propose(command).await {
                // Its apply wakes the loop again, which leases the next batch if one is ready.
                Ok(_) | Err(QueueError::Busy) => {}
                Err(e) => return Err(e),
            }
        }

        next = next.min(self.claim_ticks(schedules, now).await?);
        Ok(next)
    }

    /// Creates the queues installed workers name and sets the consumers they declare.
    async fn reconcile(&self) -> Result<(), QueueError> {
        for (queue, consumer) in self.inner.host.declared() {
            let found = self.inner.state.consumer(&queue)?;
            if found.is_none() {
                self.create_queue(&queue).await?;
            }
            if let Some(consumer) = consumer {
                if found.flatten().as_ref() != Some(&consumer) {
                    self.put_consumer(&queue, consumer).await?;
                }
            }
        }
        Ok(())
    }

    /// A live member for a lease or a run, by rendezvous on its id.
    async fn pick_holder(&self, id: &str) -> String {
        let membership = &self.inner.membership;
        let mut members = vec![membership.me().node_id.clone()];
        match membership.alive_peers().await {
            Ok(peers) => members.extend(peers.into_iter().map(|m| m.node_id)),
            Err(e) => tracing::warn!("queues: membership unavailable, running on this node: {e}"),
        }
        let names: Vec<&str> = members.iter().map(String::as_str).collect();
        nimbus_cluster::placement::rank(id.as_bytes(), &names, 1)
            .first()
            .map(|m| (*m).to_owned())
            .unwrap_or_else(|| membership.me().node_id.clone())
    }

    /// Claims the cron ticks due now (skipping those older than the catch-up deadline);
    /// when the next tick falls, in real time.
    async fn claim_ticks(
        &self,
        schedules: &mut HashMap<String, Option<Schedule>>,
        now: u64,
    ) -> Result<u64, QueueError> {
        let config = &self.inner.config;
        let minute_ms = config.cron_minute_ms.max(1);
        let now_s = schedule_time(now, minute_ms);
        // The catch-up deadline is in real seconds; in schedule time it scales with the minute.
        let catchup_sched = schedule_time(config.cron_catchup_secs.saturating_mul(1000), minute_ms);
        let mut next = u64::MAX;
        for (worker, expression) in self.inner.host.crons() {
            let schedule = schedules.entry(expression.clone()).or_insert_with(|| match Schedule::parse(&expression) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(%worker, "cron trigger not scheduled: {e}");
                    None
                }
            });
            let Some(schedule) = schedule else { continue };
            // Never run ticks from before the schedule was first seen: start from now.
            let last = match self.inner.state.last_run(&worker, &expression)? {
                Some(last) => last,
                None => {
                    let first = self.first_seen(&worker, &expression, now_s);
                    first.min(now_s)
                }
            };
            for tick in schedule.ticks(last, now_s, TICKS_PER_ROUND) {
                let late = now_s.saturating_sub(tick) > catchup_sched;
                let holder = if late { String::new() } else { self.pick_holder(&format!("{worker}/{tick}")).await };
                let command = Command::Claim {
                    worker: worker.clone(),
                    cron: expression.clone(),
                    scheduled_ms: tick,
                    holder,
                    time_ms: now,
                    status: late.then_some(RunStatus::Skipped),
                };
                match self.propose(command).await {
                    Ok(_) | Err(QueueError::Claimed) => {}
                    Err(e) => return Err(e),
                }
                if late {
                    tracing::warn!(%worker, cron = %expression, scheduled_ms = tick, "cron tick missed past the catch-up deadline; skipped");
                }
            }
            if let Some(tick) = schedule.next_after(now_s) {
                next = next.min(real_time(tick, minute_ms));
            }
        }
        Ok(next)
    }

    /// When this process first saw `cron` of `worker` (schedule time): ticks before it are
    /// not caught up, so a new deployment does not run the tick that just passed.
    fn first_seen(&self, worker: &str, cron: &str, now_s: u64) -> u64 {
        let mut seen = self.inner.first_seen.lock().unwrap_or_else(|p| p.into_inner());
        *seen.entry((worker.to_owned(), cron.to_owned())).or_insert(now_s)
    }

    /// The runner (see the module's header), until shutdown.
    pub async fn run_held(self, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.inner.config.poll_ms.max(10));
        let mut changes = self.inner.state.changes();
        let me = self.inner.membership.me().node_id.clone();
        loop {
            if let Err(e) = self.start_held(&me) {
                tracing::warn!("queues runner: {e}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = changes.changed() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Starts what this node holds and has not started yet, while slots are free.
    fn start_held(&self, me: &str) -> Result<(), QueueError> {
        let now = now_ms();
        let leases = self.inner.state.leases_of(me)?;
        let runs = self.inner.state.runs_of(me)?;
        let started = &self.inner.started;
        started.forget_all_but(leases.iter().map(|l| l.id.clone()).chain(runs.iter().map(run_key)));
        for lease in leases {
            // One about to expire is left to expire: it will be leased again.
            if lease.until_ms <= now + 1_000 || !started.start(&lease.id) {
                continue;
            }
            let Ok(slot) = self.inner.slots.clone().try_acquire_owned() else {
                started.abandon(&lease.id);
                return Ok(());
            };
            let queues = self.clone();
            tokio::spawn(async move {
                queues.run_lease(lease).await;
                drop(slot);
            });
        }
        for run in runs {
            let key = run_key(&run);
            if !started.start(&key) {
                continue;
            }
            let Ok(slot) = self.inner.slots.clone().try_acquire_owned() else {
                started.abandon(&key);
                return Ok(());
            };
            let queues = self.clone();
            tokio::spawn(async move {
                queues.run_cron(run).await;
                drop(slot);
            });
        }
        Ok(())
    }

    /// Runs one lease's batch through its consumer and settles it. If the settle cannot be
    /// committed before the lease's deadline, the lease expires and the batch is delivered
    /// again.
    async fn run_lease(&self, lease: Lease) {
        let state = &self.inner.state;
        let (messages, worker) = match (state.leased(&lease.id), state.consumer(&lease.queue)) {
            (Ok(messages), Ok(Some(consumer))) => match consumer.map(|c| c.kind) {
                Some(super::state::ConsumerKind::Worker(worker)) => (messages, worker),
                _ => return,
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(lease = %lease.id, "queues runner: {e}");
                return;
            }
            _ => return,
        };
        if messages.is_empty() {
            return;
        }
        let decisions = match self.inner.host.queue(&worker, &lease.queue, &messages).await {
            Ok(decisions) if decisions.len() == messages.len() => decisions,
            Ok(_) => vec![Decision::Retry(None); messages.len()],
            Err(e) => {
                tracing::warn!(%worker, queue = %lease.queue, "queue handler failed; the batch is retried: {e}");
                vec![Decision::Retry(None); messages.len()]
            }
        };
        let decisions: Vec<(String, Decision)> = messages.iter().map(|m| m.id.clone()).zip(decisions).collect();
        let mut backoff = Duration::from_millis(50);
        loop {
            let command = Command::Settle { lease: lease.id.clone(), decisions: decisions.clone(), time_ms: now_ms() };
            match self.propose(command).await {
                Ok(_) => return,
                Err(QueueError::NoSuchLease(_)) => {
                    tracing::warn!(lease = %lease.id, "the lease expired before it was settled; its batch is delivered again");
                    return;
                }
                Err(e) if now_ms() + backoff.as_millis() as u64 >= lease.until_ms => {
                    tracing::warn!(lease = %lease.id, "settling failed until the lease's deadline; its batch is delivered again: {e}");
                    return;
                }
                Err(e) => {
                    tracing::debug!(lease = %lease.id, "settling: {e}; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Runs one claimed cron tick and records its outcome. A run claimed before this process
    /// started is not run (its node died while it ran, or before): at most once.
    async fn run_cron(&self, run: Run) {
        let started = std::time::Instant::now();
        let status = if run.claimed_ms < self.inner.started_ms {
            RunStatus::Error("the node restarted before this run finished; it is not run again".into())
        } else {
            match self.inner.host.scheduled(&run.worker, &run.cron, run.scheduled_ms).await {
                Ok(()) => RunStatus::Ok,
                Err(e) => RunStatus::Error(e),
            }
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let mut backoff = Duration::from_millis(50);
        for _ in 0..20 {
            let command = Command::Outcome {
                worker: run.worker.clone(),
                cron: run.cron.clone(),
                scheduled_ms: run.scheduled_ms,
                status: status.clone(),
                duration_ms,
            };
            match self.propose(command).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(worker = %run.worker, "recording a cron outcome: {e}; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        tracing::warn!(worker = %run.worker, cron = %run.cron, "the outcome of a cron run could not be recorded");
    }
}

fn run_key(run: &Run) -> String {
    format!("cron {} {} {}", run.worker, run.cron, run.scheduled_ms)
}

/// The leases and cron runs this node's runner has started. One stays here from its start
/// until this replica's state no longer lists it as held here, not merely until its handler
/// returns: the `Settle` or `Outcome` is committed through the leader, and a follower may
/// apply it a moment later. Until then the local state still lists the work, and only this
/// set keeps the runner from running a settled batch or a finished cron tick again.
#[derive(Default)]
pub(crate) struct Started(std::sync::Mutex<HashSet<String>>);

impl Started {
    /// Marks `key` started; false if it already was.
    pub(crate) fn start(&self, key: &str) -> bool {
        self.lock().insert(key.to_owned())
    }

    /// Unmarks `key`, which was not run after all (no slot was free).
    pub(crate) fn abandon(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Forgets every key but those the local state lists as held here now. A started key
    /// is listed until its outcome is applied here, so none is forgotten while it can run.
    pub(crate) fn forget_all_but(&self, listed: impl Iterator<Item = String>) {
        let listed: HashSet<String> = listed.collect();
        self.lock().retain(|key| listed.contains(key));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
