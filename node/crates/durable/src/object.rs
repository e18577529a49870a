//! The owner's side of one live object: its actor and its replicator.
//!
//! The actor activates the object (a new epoch promised by a quorum of the cluster, the
//! newest copy of its storage pulled in), then runs its events one at a time on one instance
//! of the class: that is the input gate. After each event it hands the event's writes and
//! outcome to the replicator and goes on with the next event; the replicator sends the
//! writes of every event waiting to the successors in one message and releases the outcomes
//! only once all of them have accepted (the output gate), in order. The actor stops when
//! the object has been idle for `idle_evict_ms` (hibernation), when this node no longer
//! owns it in the membership view, when a holder of its epoch leaves, or when a holder
//! reports a newer epoch.

use super::rules;
use super::sockets::Frame;
use super::storage::{check_writes, HolderState, ListOptions, Write};
use super::wire::{Epoch, Event, EventOutcome, Reply, Request, Step, Version};
use super::{ClassHost, Durable, DurableError, Namespace, ObjectId, ObjectInstance};
use nimbus_cluster::Member;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Cloudflare retries a failing alarm up to six times.
pub const ALARM_RETRIES: u32 = 6;

/// An event on its way into an object, and where its outcome goes.
pub struct Delivery {
    pub event: Event,
    pub reply: oneshot::Sender<Result<EventOutcome, DurableError>>,
}

/// What an instance of a class can reach of its object: its storage under the current
/// epoch. Clones share the record of writes not yet handed to the replicator.
#[derive(Clone)]
pub struct ObjectContext {
    pub namespace: Namespace,
    pub id: ObjectId,
    durable: Durable,
    epoch: Epoch,
    progress: Arc<Mutex<Progress>>,
}

struct Progress {
    version: Version,
    steps: Vec<Step>,
    /// The running event is a `fetch` that asks for a WebSocket upgrade.
    upgrade: bool,
    /// The socket the running `fetch` accepted.
    accepted: Option<u64>,
    /// Frames for the object's sockets, released with the event's outcome.
    outbox: Vec<(u64, Frame)>,
}

/// The request header the edge adds to a WebSocket upgrade before the worker sees it (the
/// `upgrade` header itself is hop-by-hop and does not reach guests).
pub const UPGRADE_HEADER: &str = "x-nimbus-websocket-upgrade";
/// The response header naming the accepted socket, `<namespace> <id> <socket>`, that tells
/// the edge to complete the upgrade and attach the client to it.
pub const ACCEPTED_HEADER: &str = "x-nimbus-websocket";

impl ObjectContext {
    pub fn get(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, DurableError> {
        self.durable.inner.storage.get(&self.id, keys)
    }

    pub fn list(&self, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>, DurableError> {
        self.durable.inner.storage.list(&self.id, options)
    }

    pub fn alarm(&self) -> Result<Option<i64>, DurableError> {
        self.durable.inner.storage.get_alarm(&self.id)
    }

    /// Applies `writes` atomically to this node's copy, as the next version, if this node
    /// still holds the epoch; they reach the successors with the event's outcome.
    pub fn write(&self, writes: Vec<Write>) -> Result<(), DurableError> {
        check_writes(&writes)?;
        let storage = &self.durable.inner.storage;
        let _guard = self.durable.lock(&self.id);
        let state = storage.state(&self.id)?.unwrap_or_default();
        if state.promised > self.epoch {
            return Err(DurableError::Fenced(state.promised));
        }
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let base = progress.version.clone();
        let version = Version { epoch: self.epoch.clone(), seq: base.seq + 1 };
        let next =
            HolderState { namespace: self.namespace.0.clone(), promised: self.epoch.clone(), version: version.clone() };
        storage.apply(&self.id, &writes, &next)?;
        progress.version = version.clone();
        progress.steps.push(Step { base, version, writes });
        Ok(())
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts the WebSocket the running `fetch` asks for.
    pub fn accept_socket(&self, tags: Vec<String>) -> Result<u64, DurableError> {
        let mut progress = self.progress();
        if !progress.upgrade || progress.accepted.is_some() {
            return Err(DurableError::Invalid(
                "accept is only allowed once, in a fetch that carries a WebSocket upgrade".into(),
            ));
        }
        let socket = self.durable.inner.sockets.accept(self.id, tags).map_err(socket_error)?;
        progress.accepted = Some(socket);
        Ok(socket)
    }

    /// Queues `frame` for `socket`; it leaves with the event's outcome (the output gate).
    pub fn send_socket(&self, socket: u64, frame: Frame) -> Result<(), DurableError> {
        self.durable.inner.sockets.tags(&self.id, socket).map_err(socket_error)?;
        self.progress().outbox.push((socket, frame));
        Ok(())
    }

    pub fn sockets(&self, tag: Option<&str>) -> Vec<u64> {
        self.durable.inner.sockets.list(&self.id, tag)
    }

    pub fn socket_tags(&self, socket: u64) -> Result<Vec<String>, DurableError> {
        self.durable.inner.sockets.tags(&self.id, socket).map_err(socket_error)
    }

    /// The steps not yet handed to the replicator, and the version they lead to.
    fn take_steps(&self) -> (Vec<Step>, Version) {
        let mut progress = self.progress();
        (std::mem::take(&mut progress.steps), progress.version.clone())
    }
}

fn socket_error(error: super::sockets::SocketError) -> DurableError {
    DurableError::Invalid(error.to_string())
}

/// The actor for one live object on its owner.
pub struct Actor {
    durable: Durable,
    classes: Arc<dyn ClassHost>,
    namespace: Namespace,
    id: ObjectId,
    generation: u64,
    /// Shown by `/v1/node/durable` once activated.
    epoch_slot: Arc<Mutex<Option<Epoch>>>,
}

/// An event that ran, waiting for its writes to reach the successors.
struct Pending {
    steps: Vec<Step>,
    /// The owner's version once `steps` are applied.
    head: Version,
    outbox: Vec<(u64, Frame)>,
    outcome: Result<EventOutcome, DurableError>,
    reply: oneshot::Sender<Result<EventOutcome, DurableError>>,
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Actor {
    pub fn new(
        durable: Durable,
        classes: Arc<dyn ClassHost>,
        namespace: Namespace,
        id: ObjectId,
        generation: u64,
        epoch_slot: Arc<Mutex<Option<Epoch>>>,
    ) -> Self {
        Actor { durable, classes, namespace, id, generation, epoch_slot }
    }

    pub async fn run(self, mut inbox: mpsc::Receiver<Delivery>, shutdown: CancellationToken) {
        let (epoch, version, rebase, quorum_set) = match self.activate().await {
            Ok(activated) => activated,
            Err(e) => {
                tracing::debug!(object = %self.id, "activation failed: {e}");
                // The queued events did not run: dropping them tells their callers so.
                inbox.close();
                self.durable.retire(&self.id, self.generation);
                return;
            }
        };
        tracing::debug!(object = %self.id, namespace = %self.namespace, %epoch, "object activated");
        *self.epoch_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(epoch.clone());
        self.durable.inner.activations.fetch_add(1, Ordering::Relaxed);

        let context = ObjectContext {
            namespace: self.namespace.clone(),
            id: self.id,
            durable: self.durable.clone(),
            epoch: epoch.clone(),
            progress: Arc::new(Mutex::new(Progress {
                version,
                steps: vec![rebase],
                upgrade: false,
                accepted: None,
                outbox: Vec::new(),
            })),
        };
        let fenced = CancellationToken::new();
        let (confirm, confirms) = mpsc::unbounded_channel();
        let replicator = Replicator {
            durable: self.durable.clone(),
            namespace: self.namespace.clone(),
            id: self.id,
            epoch: epoch.clone(),
            fenced: fenced.clone(),
            quorum_set,
        };
        self.durable.inner.tasks.spawn("durable-replicator", move |_| replicator.run(confirms));

        let mut instance: Option<Box<dyn ObjectInstance>> = None;
        let mut view = self.durable.inner.view.clone();
        let idle = self.durable.inner.settings.idle_evict;
        loop {
            let delivery = tokio::select! {
                delivery = inbox.recv() => match delivery {
                    Some(delivery) => delivery,
                    None => break,
                },
                _ = tokio::time::sleep(idle) => {
                    self.durable.inner.evictions.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(object = %self.id, "idle: evicted");
                    break;
                }
                changed = view.changed() => {
                    if changed.is_err() || !view.borrow_and_update().owns(&self.id) {
                        tracing::info!(object = %self.id, "no longer the owner: stopping");
                        break;
                    }
                    continue;
                }
                _ = fenced.cancelled() => {
                    tracing::info!(object = %self.id, "a newer owner took over: stopping");
                    break;
                }
                _ = shutdown.cancelled() => break,
            };
            if instance.is_none() {
                match self.classes.instantiate(context.clone()).await {
                    Ok(created) => instance = Some(created),
                    Err(e) => {
                        let _ = delivery.reply.send(Err(e));
                        continue;
                    }
                }
            }
            let Some(running) = instance.as_mut() else { continue };
            let outcome = match self.handle(running.as_mut(), &context, &delivery.event).await {
                // The event ran: its caller must not take it for one that did not and send
                // it again (an alarm whose clearing was fenced would run twice at once).
                Err(e) if e.is_retryable() => {
                    Err(DurableError::Unavailable(format!("the event ran, but its outcome cannot be kept: {e}")))
                }
                other => other,
            };
            if matches!(outcome, Err(DurableError::Handler(_))) {
                // A trap or a limit: this instance never runs again; the next event gets a new one.
                instance = None;
            }
            let outbox = std::mem::take(&mut context.progress().outbox);
            let (steps, head) = context.take_steps();
            let pending = Pending { steps, head, outbox, outcome, reply: delivery.reply };
            if let Err(unsent) = confirm.send(pending) {
                let _ = unsent.0.reply.send(Err(DurableError::Unavailable("the replicator stopped".into())));
            }
        }
        inbox.close();
        drop(instance);
        if !self.durable.view().owns(&self.id) || fenced.is_cancelled() {
            // The object runs elsewhere now: its clients reconnect there.
            self.durable.inner.sockets.drop_object(&self.id);
        }
        self.durable.retire(&self.id, self.generation);
        *self.epoch_slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs one event; for an alarm, also clears it once handled (or given up).
    async fn handle(
        &self,
        instance: &mut dyn ObjectInstance,
        context: &ObjectContext,
        event: &Event,
    ) -> Result<EventOutcome, DurableError> {
        let (at_ms, retry) = match event {
            Event::Alarm { at_ms, retry } => (at_ms, retry),
            Event::Fetch(request) => return self.fetch(instance, context, request, event).await,
            Event::SocketClose { socket, .. } => {
                let outcome = instance.run(event).await;
                self.durable.inner.sockets.remove(&self.id, *socket);
                return outcome;
            }
            Event::SocketMessage { .. } => return instance.run(event).await,
        };
        let current = context.alarm()?;
        if current != Some(*at_ms) || *at_ms > now_ms() {
            return Ok(EventOutcome::AlarmNotDue(current));
        }
        let outcome = instance.run(event).await;
        let done = match &outcome {
            Ok(EventOutcome::AlarmDone) => true,
            _ if *retry >= ALARM_RETRIES => {
                tracing::warn!(object = %self.id, retries = retry, "alarm failed on its last retry: giving up");
                true
            }
            _ => false,
        };
        // The handler may have set a new alarm; only the one that fired is cleared.
        if done && context.alarm()? == Some(*at_ms) {
            context.write(vec![Write::SetAlarm(None)])?;
        }
        match outcome {
            Err(e) if !done => Ok(EventOutcome::AlarmFailed(e.to_string())),
            Err(_) => Ok(EventOutcome::AlarmDone),
            other => other,
        }
    }

    /// Runs a `fetch`; one that accepted a WebSocket answers 101 naming the socket.
    async fn fetch(
        &self,
        instance: &mut dyn ObjectInstance,
        context: &ObjectContext,
        request: &super::wire::HttpMessage,
        event: &Event,
    ) -> Result<EventOutcome, DurableError> {
        {
            let mut progress = context.progress();
            progress.upgrade = request.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(UPGRADE_HEADER));
            progress.accepted = None;
        }
        let outcome = instance.run(event).await;
        let accepted = {
            let mut progress = context.progress();
            progress.upgrade = false;
            progress.accepted.take()
        };
        let Some(socket) = accepted else { return outcome };
        match outcome {
            Ok(EventOutcome::Response(mut response)) if response.status == 101 => {
                response.headers.retain(|(name, _)| !name.eq_ignore_ascii_case(ACCEPTED_HEADER));
                response.headers.push((ACCEPTED_HEADER.into(), format!("{} {} {socket}", self.namespace, self.id)));
                Ok(EventOutcome::Response(response))
            }
            other => {
                self.durable.inner.sockets.remove(&self.id, socket);
                other
            }
        }
    }

    /// Takes ownership: a new epoch promised by a quorum of the cluster, this node's copy
    /// brought up to the newest one among the promisers. Returns the epoch, the version this
    /// copy is now at, the step that moves the newest copy to it (the successors' first
    /// step), and the holders every write of the epoch must reach.
    ///
    /// Why this is safe across differing views: every write of an epoch is accepted by all
    /// `w` holders it was taken with, and a new epoch needs promises from `p` of the `n`
    /// members known (down ones included) with `p + w > n`, so the promisers include a holder
    /// of the last epoch — which either has every write that epoch acknowledged, or promised
    /// first and refuses the rest. `p` is also at least a majority, so two sides of a
    /// partition cannot both take an epoch.
    async fn activate(&self) -> Result<(Epoch, Version, Step, QuorumSet), DurableError> {
        let view = self.durable.view();
        if !view.owns(&self.id) {
            return Err(DurableError::NotOwner);
        }
        let holders: Vec<Member> = view.holders(&self.id).into_iter().cloned().collect();
        let successors = &holders[1..];
        let peers: Vec<Member> = view.live.iter().filter(|m| m.node_id != view.me).cloned().collect();
        let known = view.known.max(view.live.len());
        let quorum = rules::quorum(known, holders.len());
        if view.live.len() < quorum {
            return Err(DurableError::Unavailable(format!(
                "{} of {known} members are live; {quorum} must promise to take ownership",
                view.live.len()
            )));
        }
        let storage = &self.durable.inner.storage;
        let me = self.durable.inner.me.clone();
        let mut term = {
            let state = storage.state(&self.id)?.unwrap_or_default();
            rules::next_term(&state.promised, &state.version)
        };
        for _ in 0..3 {
            let epoch = Epoch { term, node: me.clone() };
            let local = {
                let _guard = self.durable.lock(&self.id);
                let mut state = storage.state(&self.id)?.unwrap_or_default();
                if !rules::admits_promise(&state.promised, &epoch) {
                    term = state.promised.term + 1;
                    continue;
                }
                state.promised = epoch.clone();
                state.namespace = self.namespace.0.clone();
                storage.set_state(&self.id, &state)?;
                state.version
            };
            let timeout = Duration::from_secs(1);
            let replies = futures::future::join_all(peers.iter().map(|peer| {
                let request = Request::Promise {
                    to: peer.node_id.clone(),
                    namespace: self.namespace.0.clone(),
                    id: self.id.0,
                    epoch: epoch.clone(),
                };
                async move { self.durable.peer_call(peer, &request, timeout).await }
            }))
            .await;
            let mut versions = vec![(None, local.clone())];
            let mut newer: Option<Epoch> = None;
            for (holder, reply) in peers.iter().zip(replies) {
                match reply {
                    Ok(Reply::Promised(version)) => versions.push((Some(holder), version)),
                    Ok(Reply::Fenced { promised }) => newer = newer.max(Some(promised)),
                    Ok(other) => tracing::debug!(holder = %holder.node_id, "unexpected promise reply {other:?}"),
                    Err(e) => tracing::debug!(holder = %holder.node_id, "promise failed: {e}"),
                }
            }
            if versions.len() < quorum {
                match newer {
                    Some(promised) => {
                        term = promised.term + 1;
                        continue;
                    }
                    None => {
                        return Err(DurableError::Unavailable(format!(
                            "{} of {known} members promised; {quorum} are needed",
                            versions.len()
                        )))
                    }
                }
            }
            let (from, newest) = rules::newest(versions.iter().map(|(holder, v)| (*holder, v)))
                .map(|(holder, v)| (holder, v.clone()))
                .unwrap_or((None, local.clone()));
            let mut best = newest;
            if let (Some(holder), true) = (from, best > local) {
                best = self.pull(holder, &epoch).await?;
            }
            let version = Version { epoch: epoch.clone(), seq: best.seq };
            let _guard = self.durable.lock(&self.id);
            let mut state = storage.state(&self.id)?.unwrap_or_default();
            if state.promised != epoch {
                return Err(DurableError::Fenced(state.promised));
            }
            state.version = version.clone();
            storage.set_state(&self.id, &state)?;
            let quorum_set = QuorumSet { successors: successors.to_vec() };
            tracing::debug!(object = %self.id, promised = versions.len(), needed = quorum, "epoch promised");
            return Ok((epoch, version.clone(), Step { base: best, version, writes: Vec::new() }, quorum_set));
        }
        Err(DurableError::Unavailable("ownership is contended; try again".into()))
    }

    /// Copies the newest copy of the object from `holder` into this node.
    async fn pull(&self, holder: &Member, epoch: &Epoch) -> Result<Version, DurableError> {
        let request = Request::Pull { to: holder.node_id.clone(), id: self.id.0, epoch: epoch.clone() };
        let snapshot =
            match self.durable.peer_call(holder, &request, self.durable.inner.settings.request_timeout).await? {
                Reply::Snapshot(snapshot) => snapshot,
                other => return Err(super::reply_error(other)),
            };
        let storage = &self.durable.inner.storage;
        let _guard = self.durable.lock(&self.id);
        let state = storage.state(&self.id)?.unwrap_or_default();
        if state.promised != *epoch {
            return Err(DurableError::Fenced(state.promised));
        }
        let next = HolderState {
            namespace: self.namespace.0.clone(),
            promised: epoch.clone(),
            version: snapshot.version.clone(),
        };
        storage.install(&self.id, &snapshot, &next)?;
        tracing::debug!(object = %self.id, from = %holder.node_id, version = %snapshot.version, "pulled the newest copy");
        Ok(snapshot.version)
    }
}

/// The successors an epoch was taken with: every write of the epoch must reach all of them
/// (see `Actor::activate` for why).
#[derive(Debug, Clone)]
struct QuorumSet {
    successors: Vec<Member>,
}

/// Sends an object's writes to its successors and releases outcomes once they have them.
struct Replicator {
    durable: Durable,
    namespace: Namespace,
    id: ObjectId,
    epoch: Epoch,
    fenced: CancellationToken,
    quorum_set: QuorumSet,
}

/// At most this many events share one replication round.
const MAX_BATCH: usize = 1024;

impl Replicator {
    async fn run(self, mut confirms: mpsc::UnboundedReceiver<Pending>) {
        while let Some(first) = confirms.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match confirms.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let steps: Vec<Step> = batch.iter_mut().flat_map(|p| std::mem::take(&mut p.steps)).collect();
            let head = batch.last().map(|p| p.head.clone()).unwrap_or_default();
            let confirmed = if self.fenced.is_cancelled() {
                Err(DurableError::Unavailable("a newer owner took over before the writes were confirmed".into()))
            } else {
                self.confirm(steps, head).await
            };
            for pending in batch {
                // These events ran: their callers must not send them again, so no error here
                // says `NotOwner`.
                let released = match &confirmed {
                    Ok(()) => {
                        for (socket, frame) in pending.outbox {
                            // A client that went away is noticed by its node; nothing to do here.
                            let _ = self.durable.inner.sockets.send(&self.id, socket, frame);
                        }
                        pending.outcome
                    }
                    Err(e) => Err(e.clone()),
                };
                let _ = pending.reply.send(released);
            }
        }
    }

    /// Fences this owner if this node has promised a newer epoch than its own.
    fn check_own_promise(&self) -> Result<(), DurableError> {
        let promised = self.durable.inner.storage.state(&self.id)?.unwrap_or_default().promised;
        if promised > self.epoch {
            return Err(self.fence(promised));
        }
        Ok(())
    }

    /// Waits until every successor the epoch was taken with, and every successor live in
    /// the current view, has accepted `steps` (leading to `head`) under this epoch.
    async fn confirm(&self, steps: Vec<Step>, head: Version) -> Result<(), DurableError> {
        self.check_own_promise()?;
        self.replicate_all(steps, head).await?;
        // Once more after the successors: this node may itself have promised a newer owner
        // while they answered, and a read released then could miss that owner's writes.
        self.check_own_promise()
    }

    async fn replicate_all(&self, steps: Vec<Step>, head: Version) -> Result<(), DurableError> {
        let deadline = Instant::now() + self.durable.inner.settings.request_timeout;
        let mut acked: HashSet<String> = HashSet::new();
        let quorum = &self.quorum_set;
        loop {
            let view = self.durable.view();
            let mut waiting: Vec<Member> = view
                .holders(&self.id)
                .into_iter()
                .filter(|m| m.node_id != view.me && !acked.contains(&m.node_id))
                .cloned()
                .collect();
            for member in &quorum.successors {
                if acked.contains(&member.node_id) {
                    continue;
                }
                // Its record as the view has it now: a restarted holder has new addresses,
                // and the ones saved at activation may belong to another node by now.
                let Some(current) = view.live.iter().find(|m| m.node_id == member.node_id) else {
                    // A holder of this epoch is gone: its writes can no longer reach all of
                    // them. Stop; the next event takes a new epoch with the live holders.
                    self.fenced.cancel();
                    return Err(DurableError::Unavailable(format!(
                        "holder {} left before the writes were confirmed; the object moves",
                        member.node_id
                    )));
                };
                if !waiting.iter().any(|m| m.node_id == member.node_id) {
                    waiting.push(current.clone());
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let results = futures::future::join_all(waiting.iter().map(|member| {
                let request = Request::Replicate {
                    to: member.node_id.clone(),
                    namespace: self.namespace.0.clone(),
                    id: self.id.0,
                    epoch: self.epoch.clone(),
                    steps: steps.clone(),
                    head: head.clone(),
                };
                async move { self.replicate_to(member, &request, left).await }
            }))
            .await;
            for (member, result) in waiting.iter().zip(results) {
                match result {
                    Ok(()) => {
                        acked.insert(member.node_id.clone());
                    }
                    Err(DurableError::Fenced(promised)) => return Err(self.fence(promised)),
                    Err(e) => tracing::debug!(object = %self.id, holder = %member.node_id, "replication failed: {e}"),
                }
            }
            if Instant::now() >= deadline {
                // Its epoch's quorum may be gone for good: stop, so the next event takes a
                // new epoch with the holders live then.
                self.fenced.cancel();
                return Err(DurableError::Unavailable(format!(
                    "the object's replicas did not confirm its writes within {} ms",
                    self.durable.inner.settings.request_timeout.as_millis()
                )));
            }
            if waiting.iter().any(|m| !acked.contains(&m.node_id)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn fence(&self, promised: Epoch) -> DurableError {
        self.fenced.cancel();
        DurableError::Unavailable(format!("ownership moved to epoch {promised} before the writes were confirmed"))
    }

    /// One successor: the steps, or the whole copy if it cannot apply them.
    async fn replicate_to(&self, holder: &Member, request: &Request, timeout: Duration) -> Result<(), DurableError> {
        match self.durable.peer_call(holder, request, timeout).await? {
            Reply::Replicated => return Ok(()),
            Reply::NeedSnapshot => {}
            other => return Err(super::reply_error(other)),
        }
        let snapshot = {
            let _guard = self.durable.lock(&self.id);
            self.durable.inner.storage.snapshot(&self.id)?
        };
        let install = Request::Install {
            to: holder.node_id.clone(),
            namespace: self.namespace.0.clone(),
            id: self.id.0,
            epoch: self.epoch.clone(),
            snapshot,
        };
        match self.durable.peer_call(holder, &install, timeout).await? {
            Reply::Replicated => Ok(()),
            other => Err(super::reply_error(other)),
        }
    }
}
