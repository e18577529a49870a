//! What nodes say to each other about Durable Objects, postcard-encoded in a
//! `DurableMessage` on the peer gRPC service.
//!
//! Two conversations: a node that is not an object's owner forwards the object's events to
//! the owner ([`Request::Event`]); the owner runs the ownership protocol with the object's
//! other holders ([`Request::Promise`], [`Request::Replicate`], [`Request::Install`],
//! [`Request::Pull`]).

use super::sockets::Frame;
use super::storage::{Snapshot, Write};
use serde::{Deserialize, Serialize};

/// An ownership epoch: an activation of an object by one node. Epochs order by term, then
/// node; a holder that has promised an epoch refuses every older one.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch {
    pub term: u64,
    pub node: String,
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.term, self.node)
    }
}

/// The version of a copy of an object's storage: the epoch whose owner wrote it last and
/// the count of the object's writes. One owner writes under an epoch and an epoch activates
/// once, so two copies at the same version hold the same data; versions order by epoch, then
/// seq (see [`super::rules`] for why a newer epoch wins whatever its seq).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub epoch: Epoch,
    pub seq: u64,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.epoch, self.seq)
    }
}

/// One step of an object's history: the writes that move a copy from `base` to `version`
/// (none for the step an activation takes to its own term).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub base: Version,
    pub version: Version,
    pub writes: Vec<Write>,
}

/// An HTTP request or response as a Durable Object sees it (whole bodies).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpMessage {
    /// The method of a request; empty in a response.
    pub method: String,
    /// The URL of a request; empty in a response.
    pub url: String,
    /// The status of a response; 0 in a request.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Something that happens to an object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    Fetch(HttpMessage),
    /// The alarm set for `at_ms` is due; the `retry`th attempt.
    Alarm {
        at_ms: i64,
        retry: u32,
    },
    /// The client of WebSocket `socket` sent a text or binary frame.
    SocketMessage {
        socket: u64,
        frame: Frame,
    },
    /// The client of WebSocket `socket` closed it (or went away: 1006).
    SocketClose {
        socket: u64,
        code: u16,
        reason: String,
    },
}

/// What became of an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EventOutcome {
    Response(HttpMessage),
    /// The alarm handler ran and succeeded (or gave up after its last retry).
    AlarmDone,
    /// The handler failed; the alarm stays set and is retried.
    AlarmFailed(String),
    /// The object has no alarm due at that time (already fired, moved or cleared): the
    /// alarm now set, if any.
    AlarmNotDue(Option<i64>),
    /// A WebSocket event was handled.
    Delivered,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Run `event` on the object; sent to the node believed to own it.
    Event { namespace: String, id: [u8; 32], event: Event },
    /// A new owner asks a holder to accept `epoch` and say what version it holds.
    /// The ownership requests name the node they are for (`to`): an address seen earlier
    /// may belong to another node by now, and a holder refuses what is not addressed to it.
    Promise { to: String, namespace: String, id: [u8; 32], epoch: Epoch },
    /// The owner's writes since the last batch, in order, leaving its copy at `head`.
    Replicate { to: String, namespace: String, id: [u8; 32], epoch: Epoch, steps: Vec<Step>, head: Version },
    /// The owner's whole copy, for a holder that cannot apply the steps.
    Install { to: String, namespace: String, id: [u8; 32], epoch: Epoch, snapshot: Snapshot },
    /// A new owner fetches the newest copy from the holder that has it.
    Pull { to: String, id: [u8; 32], epoch: Epoch },
    /// The client's node attaches to WebSocket `socket` of the object (the `DurableAttach`
    /// stream: the frames the object sends, postcard `Frame`s).
    Attach { id: [u8; 32], socket: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    Event(EventOutcome),
    /// A promise was kept: the version this holder has.
    Promised(Version),
    Replicated,
    /// The steps do not start where this holder's copy is: send a snapshot.
    NeedSnapshot,
    Snapshot(Snapshot),
    /// An owner of an older epoch than this holder has promised.
    Fenced {
        promised: Epoch,
    },
    /// This node does not own the object (its view disagrees, or it is stopping it).
    NotOwner,
    /// The event ran and failed, or the request was refused; the message says why.
    Failed {
        message: String,
        client_error: bool,
    },
}
