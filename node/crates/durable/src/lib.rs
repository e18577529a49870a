//! Durable Objects: one live instance per id, placed by rendezvous hashing, with storage
//! replicated to two successors before a response is released.
//!
//! Guarantees:
//! - an [`ObjectId`] is 256 bits: 24 bytes that name the object (a hash of the namespace and
//!   name for `idFromName`, random for `newUniqueId`) and 8 bytes that bind it to its
//!   namespace, so `idFromString` refuses a malformed id and an id from another namespace;
//! - an event reaches the object's owner from any node ([`Durable::call`]); the owner runs
//!   one instance of the class per object and delivers its events one at a time (the input
//!   gate), evicting it after `durable.idle_evict_ms` without events;
//! - the owner holds its ownership under an epoch that a majority of the object's holders
//!   promised, and releases no response (not even a read's) until every live successor has
//!   accepted the event's writes under that epoch (the output gate). A holder refuses an
//!   older epoch, so once a new owner has activated, the old one can release nothing: at
//!   most one instance answers for an object, across moves, failover and partitions;
//! - a node that sees only a minority of the members it knows owns nothing, and neither
//!   does a node that has not yet published its first membership view since it started;
//! - alarms are stored and replicated with the object's data and fire on the current owner,
//!   at least once, retried with exponential backoff up to six times;
//! - a WebSocket accepted by an object stays connected while the object hibernates; the
//!   client's frames reach the object as events, the object's frames reach the client after
//!   the event that sent them has been confirmed.
//!
//! # Layout
//! - [`ObjectId`], [`Namespace`]: ids and the namespace they belong to.
//! - [`placement`]: owner and successors of an id; [`view`]: the live members it runs on.
//! - [`storage`]: an object's keys, values, alarm and holder state on one node (RocksDB).
//! - [`wire`]: what nodes say to each other; [`replica`]: a holder's side of it;
//!   [`server`]: the server half of the `DurablePeer` gRPC service;
//!   [`rules`]: the protocol's decisions as pure functions (`model.rs` model-checks them).
//! - [`object`]: the owner's actor for one live object, and its replicator.
//! - [`alarms`]: the scheduler that wakes objects whose alarm is due.
//! - [`sockets`]: WebSockets accepted by objects (they outlive evicted instances).

pub mod alarms;
#[cfg(fuzzing)]
pub mod fuzzing;
#[cfg(test)]
mod model;
mod object;
mod placement;
mod replica;
mod rules;
pub mod server;
mod sockets;
mod storage;
pub mod view;
mod wire;

use nimbus_cluster::peers::{PeerChannels, ShapedChannel, MAX_MESSAGE_BYTES};
use nimbus_cluster::Member;
use nimbus_proto::peer::durable_peer_client::DurablePeerClient;
use nimbus_proto::peer::DurableMessage;
use nimbus_util::config::DurableConfig;
use nimbus_util::tasks::Tasks;
use object::Delivery;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage::ObjectStorage;
use tokio::sync::{mpsc, oneshot, watch};
use view::View;
use wire::{Reply, Request};

/// Why a Durable Object call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DurableError {
    #[error("`{0}` is not a Durable Object id: expected 64 hex characters")]
    MalformedId(String),
    #[error("id `{id}` does not belong to namespace `{namespace}`")]
    ForeignId { id: String, namespace: String },
    #[error("{0}")]
    Invalid(String),
    #[error("no worker deploys Durable Object class `{0}`")]
    UnknownClass(String),
    /// The owner has not received the deployment that defines the class yet (it joined or
    /// restarted moments ago); the event did not run.
    #[error("the owner does not run class `{0}` yet")]
    NotDeployed(String),
    /// This node does not own the object; the event did not run (safe to send elsewhere).
    #[error("this node does not own the object")]
    NotOwner,
    /// A newer owner has taken the object over; nothing more is released under `epoch`.
    #[error("ownership epoch {0} was superseded")]
    Fenced(Epoch),
    #[error("object unavailable: {0}")]
    Unavailable(String),
    /// The object's handler trapped, hit a limit or returned an error.
    #[error("{0}")]
    Handler(String),
    #[error("{0}")]
    Internal(String),
}

impl From<nimbus_storage::StorageError> for DurableError {
    fn from(error: nimbus_storage::StorageError) -> Self {
        DurableError::Internal(error.to_string())
    }
}

impl DurableError {
    /// The caller's mistake (a 4xx), rather than the platform's or the object's.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            DurableError::MalformedId(_)
                | DurableError::ForeignId { .. }
                | DurableError::Invalid(_)
                | DurableError::UnknownClass(_)
        )
    }

    /// The event did not run, so it may be sent again (to the owner as now seen).
    fn is_retryable(&self) -> bool {
        matches!(self, DurableError::NotOwner | DurableError::Fenced(_) | DurableError::NotDeployed(_))
    }
}

/// Runs Durable Object classes: the runtime, seen from here.
#[async_trait::async_trait]
pub trait ClassHost: Send + Sync {
    /// True if the class of `namespace` is deployed on this node.
    fn has_class(&self, namespace: &Namespace) -> bool;
    /// A new instance of the class, running for the object `context` describes.
    async fn instantiate(&self, context: ObjectContext) -> Result<Box<dyn ObjectInstance>, DurableError>;
}

/// One live instance of a class, bound to one object.
#[async_trait::async_trait]
pub trait ObjectInstance: Send {
    /// Runs the handler for `event`. An error retires the instance.
    async fn run(&mut self, event: &Event) -> Result<EventOutcome, DurableError>;
}

pub use nimbus_api::node::{DurableStatus, LiveObject};
pub use object::{ObjectContext, ACCEPTED_HEADER, UPGRADE_HEADER};
pub use sockets::Frame;
pub use storage::{ListOptions, Write};
pub use wire::{Epoch, Event, EventOutcome, HttpMessage};

/// The node's Durable Objects service (cheap to clone).
#[derive(Clone)]
pub struct Durable {
    inner: Arc<Inner>,
}

struct Inner {
    me: String,
    storage: ObjectStorage,
    sockets: sockets::Sockets,
    /// Serialise the writes of one object on this node (the owner's and a holder's).
    locks: Vec<Mutex<()>>,
    view: watch::Receiver<View>,
    peers: PeerChannels,
    /// The runtime, which runs the classes (handed in at construction: an upward call).
    classes: Arc<dyn ClassHost>,
    /// Object actors and their replicators run here, so shutdown waits for them.
    tasks: Tasks,
    live: Mutex<HashMap<ObjectId, Live>>,
    settings: Settings,
    generations: AtomicU64,
    activations: AtomicU64,
    evictions: AtomicU64,
}

#[derive(Debug, Clone)]
struct Settings {
    idle_evict: Duration,
    request_timeout: Duration,
    alarm_retry: Duration,
    alarm_poll: Duration,
}

/// A live object on this node.
struct Live {
    namespace: Namespace,
    /// Tells this actor from a later one for the same object.
    generation: u64,
    events: mpsc::Sender<Delivery>,
    epoch: Arc<Mutex<Option<Epoch>>>,
    since: Instant,
}

const LOCK_STRIPES: usize = 64;

impl Durable {
    pub fn new(
        me: &Member,
        storage: nimbus_storage::Storage,
        view: watch::Receiver<View>,
        peers: PeerChannels,
        config: &DurableConfig,
        classes: Arc<dyn ClassHost>,
        tasks: Tasks,
    ) -> Self {
        let ms = Duration::from_millis;
        Durable {
            inner: Arc::new(Inner {
                me: me.node_id.clone(),
                storage: ObjectStorage::new(storage),
                sockets: sockets::Sockets::default(),
                locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
                view,
                peers,
                classes,
                tasks,
                live: Mutex::default(),
                settings: Settings {
                    idle_evict: ms(config.idle_evict_ms.max(10)),
                    request_timeout: ms(config.request_timeout_ms.max(100)),
                    alarm_retry: ms(config.alarm_retry_ms.max(1)),
                    alarm_poll: ms(config.alarm_poll_ms.max(5)),
                },
                generations: AtomicU64::new(0),
                activations: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    /// Waits until this node has published its first membership view (a node that has just
    /// started knows too little to own or place anything).
    async fn wait_ready(&self, deadline: Instant) -> Result<(), DurableError> {
        let mut view = self.inner.view.clone();
        let ready = tokio::time::timeout_at(deadline.into(), view.wait_for(|view| view.ready)).await;
        match ready {
            Ok(Ok(_)) => Ok(()),
            _ => Err(DurableError::Unavailable(
                "this node has just started and has no membership view yet; try again".into(),
            )),
        }
    }

    fn lock(&self, id: &ObjectId) -> std::sync::MutexGuard<'_, ()> {
        let stripe = usize::from(id.0[0]) % LOCK_STRIPES;
        self.inner.locks[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn view(&self) -> View {
        self.inner.view.borrow().clone()
    }

    /// Runs `event` on the object, wherever it lives: on this node if it owns it, else on
    /// the owner. Follows moves and failover until `durable.request_timeout_ms`; an event
    /// is only ever resent when it did not run.
    pub async fn call(&self, namespace: &Namespace, id: ObjectId, event: Event) -> Result<EventOutcome, DurableError> {
        let deadline = Instant::now() + self.inner.settings.request_timeout;
        self.wait_ready(deadline).await?;
        let mut backoff = Duration::from_millis(10);
        loop {
            let view = self.view();
            let outcome = match view.owner(&id) {
                None => Err(DurableError::NotOwner),
                Some(owner) if owner.node_id == self.inner.me => self.deliver(namespace, id, event.clone()).await,
                Some(owner) => {
                    let request = Request::Event { namespace: namespace.0.clone(), id: id.0, event: event.clone() };
                    match self.peer_call(owner, &request, deadline.saturating_duration_since(Instant::now())).await {
                        Ok(Reply::Event(outcome)) => Ok(outcome),
                        Ok(reply) => Err(reply_error(reply)),
                        Err(e) => Err(e),
                    }
                }
            };
            match outcome {
                Err(e) if e.is_retryable() => {
                    if Instant::now() + backoff >= deadline {
                        return Err(DurableError::Unavailable(format!(
                            "no owner answered within {} ms (this node sees {} of {} members; last: {e})",
                            self.inner.settings.request_timeout.as_millis(),
                            view.live.len(),
                            view.known
                        )));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// Runs `event` on the live object on this node, activating it if needed.
    async fn deliver(&self, namespace: &Namespace, id: ObjectId, event: Event) -> Result<EventOutcome, DurableError> {
        for _ in 0..3 {
            let events = self.live_or_activate(namespace, id)?;
            let (reply, outcome) = oneshot::channel();
            if events.send(Delivery { event: event.clone(), reply }).await.is_err() {
                continue; // evicted in between; activate again
            }
            // An actor that stops drops the events it had not started: they did not run.
            return outcome.await.unwrap_or(Err(DurableError::NotOwner));
        }
        Err(DurableError::NotOwner)
    }

    fn live_or_activate(&self, namespace: &Namespace, id: ObjectId) -> Result<mpsc::Sender<Delivery>, DurableError> {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(object) = live.get(&id) {
            if !object.events.is_closed() {
                if object.namespace != *namespace {
                    return Err(DurableError::Invalid(format!("object {id} belongs to {}", object.namespace)));
                }
                return Ok(object.events.clone());
            }
        }
        if !self.view().owns(&id) {
            return Err(DurableError::NotOwner);
        }
        let classes = self.inner.classes.clone();
        if !classes.has_class(namespace) {
            // The caller's worker binds the class, so it is deployed; this node lags behind.
            return Err(DurableError::NotDeployed(namespace.0.clone()));
        }
        let (events, inbox) = mpsc::channel(4096);
        let epoch = Arc::new(Mutex::new(None));
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
        live.insert(
            id,
            Live {
                namespace: namespace.clone(),
                generation,
                events: events.clone(),
                epoch: epoch.clone(),
                since: Instant::now(),
            },
        );
        let actor = object::Actor::new(self.clone(), classes, namespace.clone(), id, generation, epoch);
        self.inner.tasks.spawn("durable-object", move |shutdown| actor.run(inbox, shutdown));
        Ok(events)
    }

    /// Called by an actor as it stops: forgets it unless a newer one has taken its place.
    fn retire(&self, id: &ObjectId, generation: u64) {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.get(id).is_some_and(|object| object.generation == generation) {
            live.remove(id);
        }
    }

    /// A `DurablePeer` client for `member` (the client half; [`server`] is the other).
    fn client(&self, member: &Member) -> Result<DurablePeerClient<ShapedChannel>, DurableError> {
        let channel = self.inner.peers.shaped(member).map_err(|_| DurableError::NotOwner)?;
        Ok(DurablePeerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Calls `member`'s peer service with a Durable Object request.
    async fn peer_call(&self, member: &Member, request: &Request, timeout: Duration) -> Result<Reply, DurableError> {
        let mut client = self.client(member)?;
        let payload = postcard::to_allocvec(request).map_err(|e| DurableError::Internal(e.to_string()))?;
        let mut message = self.inner.peers.request(DurableMessage { payload });
        message.set_timeout(timeout.max(Duration::from_millis(1)));
        match client.durable(message).await {
            Ok(reply) => postcard::from_bytes(&reply.into_inner().payload)
                .map_err(|e| DurableError::Internal(format!("bad reply from {}: {e}", member.node_id))),
            // Refused before it ran: cut off, or no connection could be made.
            Err(status) if is_not_delivered(&status) => Err(DurableError::NotOwner),
            Err(status) => Err(DurableError::Unavailable(format!("{}: {}", member.node_id, status.message()))),
        }
    }

    /// Answers a peer's request (the `Durable` RPC).
    pub async fn serve_peer(&self, request: Request) -> Reply {
        match request {
            Request::Event { namespace, id, event } => {
                let id = ObjectId(id);
                let namespace = Namespace(namespace);
                match self.deliver(&namespace, id, event).await {
                    Ok(outcome) => Reply::Event(outcome),
                    Err(e) => error_reply(e),
                }
            }
            other => {
                let durable = self.clone();
                match tokio::task::spawn_blocking(move || replica::serve(&durable, other)).await {
                    Ok(reply) => reply,
                    Err(e) => error_reply(DurableError::Internal(e.to_string())),
                }
            }
        }
    }

    /// The frames object `id` sends on `socket`, for the node holding the client: from this
    /// node's registry if it owns the object, else streamed from the owner.
    pub async fn attach(
        &self,
        id: ObjectId,
        socket: u64,
    ) -> Result<std::pin::Pin<Box<dyn futures::Stream<Item = sockets::Frame> + Send>>, DurableError> {
        let view = self.view();
        let owner = view.owner(&id).ok_or(DurableError::NotOwner)?;
        if owner.node_id == self.inner.me {
            let frames = self.inner.sockets.attach(id, socket).map_err(|e| DurableError::Invalid(e.to_string()))?;
            return Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(frames)));
        }
        let mut client = self.client(owner)?;
        let payload = postcard::to_allocvec(&Request::Attach { id: id.0, socket })
            .map_err(|e| DurableError::Internal(e.to_string()))?;
        let stream = client
            .durable_attach(self.inner.peers.request(DurableMessage { payload }))
            .await
            .map_err(|status| DurableError::Unavailable(format!("{}: {}", owner.node_id, status.message())))?
            .into_inner();
        Ok(Box::pin(futures::StreamExt::filter_map(stream, |message| async move {
            postcard::from_bytes::<sockets::Frame>(&message.ok()?.payload).ok()
        })))
    }

    /// Serves a peer's `DurableAttach`: the frames of a socket of an object this node runs.
    pub fn serve_attach(&self, request: Request) -> Result<tokio::sync::mpsc::Receiver<sockets::Frame>, DurableError> {
        match request {
            Request::Attach { id, socket } => {
                self.inner.sockets.attach(ObjectId(id), socket).map_err(|e| DurableError::Invalid(e.to_string()))
            }
            _ => Err(DurableError::Invalid("not an attach request".into())),
        }
    }

    pub fn status(&self) -> DurableStatus {
        let view = self.view();
        let mut live: Vec<LiveObject> = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, object)| !object.events.is_closed())
            .map(|(id, object)| LiveObject {
                namespace: object.namespace.0.clone(),
                id: id.to_string(),
                epoch: object.epoch.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(ToString::to_string),
                live_ms: object.since.elapsed().as_millis() as u64,
            })
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        DurableStatus {
            node_id: self.inner.me.clone(),
            live,
            activations: self.inner.activations.load(Ordering::Relaxed),
            evictions: self.inner.evictions.load(Ordering::Relaxed),
            members_live: view.live.len(),
            members_known: view.known,
            has_majority: view.has_majority(),
            websockets: self.inner.sockets.count(),
        }
    }
}

/// True when a gRPC failure means the request never reached the peer's handler.
fn is_not_delivered(status: &tonic::Status) -> bool {
    let message = status.message().to_ascii_lowercase();
    status.code() == tonic::Code::Unavailable
        && ["fault injection", "tcp connect error", "connection refused", "dns error"]
            .iter()
            .any(|sign| message.contains(sign))
}

fn error_reply(error: DurableError) -> Reply {
    match error {
        DurableError::NotOwner | DurableError::NotDeployed(_) => Reply::NotOwner,
        DurableError::Fenced(promised) => Reply::Fenced { promised },
        other => Reply::Failed { client_error: other.is_client_error(), message: other.to_string() },
    }
}

fn reply_error(reply: Reply) -> DurableError {
    match reply {
        Reply::NotOwner => DurableError::NotOwner,
        Reply::Fenced { promised } => DurableError::Fenced(promised),
        Reply::Failed { message, client_error: true } => DurableError::Invalid(message),
        Reply::Failed { message, client_error: false } => DurableError::Handler(message),
        other => DurableError::Internal(format!("unexpected reply {other:?}")),
    }
}

/// A Durable Object namespace: one class of one worker (`<worker>:<class>`), as Cloudflare
/// scopes ids to the script and class that define them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Namespace {
    pub fn new(worker: &str, class_name: &str) -> Self {
        Namespace(format!("{worker}:{class_name}"))
    }

    /// The namespace named `<worker>:<class>`.
    pub fn parse(text: &str) -> Result<Self, DurableError> {
        match text.split_once(':') {
            Some((worker, class)) if !worker.is_empty() && !class.is_empty() => Ok(Namespace::new(worker, class)),
            _ => Err(DurableError::Invalid(format!("`{text}` is not a namespace (`<worker>:<class>`)"))),
        }
    }

    pub fn worker(&self) -> &str {
        self.0.split_once(':').map_or(self.0.as_str(), |(worker, _)| worker)
    }

    pub fn class_name(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, class)| class)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the object called `name` in this namespace.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        let hash = Sha256::new()
            .chain_update(b"nimbus-do-name\0")
            .chain_update(self.0.as_bytes())
            .chain_update(b"\0")
            .chain_update(name.as_bytes())
            .finalize();
        let mut body = [0u8; 24];
        body.copy_from_slice(&hash[..24]);
        self.seal(body)
    }

    /// A new id that no name maps to.
    pub fn new_unique_id(&self) -> ObjectId {
        let mut body = [0u8; 24];
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        rand::RngCore::fill_bytes(&mut rng, &mut body);
        // Names hash to any value, so mark unique ids: their first bit is always set, a
        // name-derived id may have it either way, and two random ids collide with chance 2^-191.
        body[0] |= 0x80;
        self.seal(body)
    }

    /// Parses and checks an id that a client handed back.
    pub fn id_from_string(&self, text: &str) -> Result<ObjectId, DurableError> {
        let bytes = hex::decode(text).map_err(|_| DurableError::MalformedId(text.to_owned()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| DurableError::MalformedId(text.to_owned()))?;
        let mut body = [0u8; 24];
        body.copy_from_slice(&bytes[..24]);
        let id = self.seal(body);
        if id.0 != bytes {
            return Err(DurableError::ForeignId { id: text.to_owned(), namespace: self.0.clone() });
        }
        Ok(id)
    }

    fn seal(&self, body: [u8; 24]) -> ObjectId {
        let tag = Sha256::new()
            .chain_update(b"nimbus-do-tag\0")
            .chain_update(self.0.as_bytes())
            .chain_update(body)
            .finalize();
        let mut id = [0u8; 32];
        id[..24].copy_from_slice(&body);
        id[24..].copy_from_slice(&tag[..8]);
        ObjectId(id)
    }
}

/// A Durable Object's id: 256 bits, shown as 64 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// An id read back from storage or a peer (already checked when it was made).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ObjectId(bytes)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests;
