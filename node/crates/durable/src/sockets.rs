//! WebSockets accepted by Durable Objects, on the object's owner.
//!
//! The registry lives beside the objects, not in their instances: an evicted (hibernating)
//! object keeps its sockets, and a message for one wakes a new instance. A socket is accepted
//! inside a `fetch` event (pending until the client's node attaches to it), then carries
//! frames from the object to the client through the attachment: the client's node holds the
//! client connection and sends the client's frames to the object as events. When the owner
//! stops running an object for good (it moved, or this node lost ownership), its sockets are
//! dropped, which ends the attachments and closes the clients (1012: reconnect).

use super::ObjectId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Most sockets one object may hold (Cloudflare: 32,768 per object).
pub const MAX_SOCKETS_PER_OBJECT: usize = 32_768;
/// Most tags per socket, and longest tag (Cloudflare: 10 tags of 256 bytes).
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_BYTES: usize = 256;
/// Frames an object may have sent that its client has not read yet (and that may wait for a
/// client to attach). Past it the client is a slow reader: its socket is closed with 1013
/// ("try again later") instead of buffering without end.
pub const MAX_QUEUED_FRAMES: usize = 1_024;

/// A WebSocket frame between an object and its client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Close { code: u16, reason: String },
}

struct Socket {
    tags: Vec<String>,
    /// The client's node, once attached; frames sent before that wait in `early`.
    attached: Option<mpsc::Sender<Frame>>,
    early: Vec<Frame>,
}

#[derive(Default)]
pub struct Sockets {
    objects: Mutex<HashMap<ObjectId, HashMap<u64, Socket>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("no open WebSocket {0} on this object")]
    Unknown(u64),
    #[error("{0}")]
    Invalid(String),
    /// The client read too slowly; its socket was closed with 1013.
    #[error("WebSocket {0} was closed: its client read too slowly ({MAX_QUEUED_FRAMES} frames queued)")]
    SlowReader(u64),
}

impl Sockets {
    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, HashMap<u64, Socket>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a socket the object accepts; the client's node attaches to it next.
    pub fn accept(&self, id: ObjectId, tags: Vec<String>) -> Result<u64, SocketError> {
        if tags.len() > MAX_TAGS || tags.iter().any(|t| t.len() > MAX_TAG_BYTES) {
            return Err(SocketError::Invalid(format!(
                "at most {MAX_TAGS} tags of at most {MAX_TAG_BYTES} bytes per WebSocket"
            )));
        }
        let mut objects = self.objects();
        let sockets = objects.entry(id).or_default();
        if sockets.len() >= MAX_SOCKETS_PER_OBJECT {
            return Err(SocketError::Invalid(format!("the object already holds {MAX_SOCKETS_PER_OBJECT} WebSockets")));
        }
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        let socket = loop {
            let candidate = rand::RngCore::next_u64(&mut rng) >> 11; // exact in a JavaScript number
            if candidate != 0 && !sockets.contains_key(&candidate) {
                break candidate;
            }
        };
        sockets.insert(socket, Socket { tags, attached: None, early: Vec::new() });
        Ok(socket)
    }

    /// Connects the client's node to an accepted socket: the frames the object sends.
    pub fn attach(&self, id: ObjectId, socket: u64) -> Result<mpsc::Receiver<Frame>, SocketError> {
        let mut objects = self.objects();
        let entry = objects.get_mut(&id).and_then(|s| s.get_mut(&socket)).ok_or(SocketError::Unknown(socket))?;
        // One slot beyond the bound, for the close that tells a slow reader why.
        let (tx, rx) = mpsc::channel(MAX_QUEUED_FRAMES + 1);
        for frame in entry.early.drain(..) {
            let _ = tx.try_send(frame);
        }
        entry.attached = Some(tx);
        Ok(rx)
    }

    /// Sends a frame to the client; a close frame also forgets the socket.
    pub fn send(&self, id: &ObjectId, socket: u64, frame: Frame) -> Result<(), SocketError> {
        let mut objects = self.objects();
        let sockets = objects.get_mut(id).ok_or(SocketError::Unknown(socket))?;
        let entry = sockets.get_mut(&socket).ok_or(SocketError::Unknown(socket))?;
        let closing = matches!(frame, Frame::Close { .. });
        match &entry.attached {
            Some(tx) if tx.is_closed() => {
                sockets.remove(&socket);
                return Err(SocketError::Unknown(socket));
            }
            Some(tx) if tx.capacity() <= 1 => {
                // The last slot carries the close; the socket is gone for the object.
                let _ = tx.try_send(Frame::Close { code: 1013, reason: "the client reads too slowly".into() });
                sockets.remove(&socket);
                return Err(SocketError::SlowReader(socket));
            }
            Some(tx) => {
                let _ = tx.try_send(frame);
            }
            None if entry.early.len() >= MAX_QUEUED_FRAMES => {
                sockets.remove(&socket);
                return Err(SocketError::SlowReader(socket));
            }
            None => entry.early.push(frame),
        }
        if closing && entry.attached.is_some() {
            sockets.remove(&socket);
        }
        Ok(())
    }

    /// The client went away.
    pub fn remove(&self, id: &ObjectId, socket: u64) {
        let mut objects = self.objects();
        if let Some(sockets) = objects.get_mut(id) {
            sockets.remove(&socket);
            if sockets.is_empty() {
                objects.remove(id);
            }
        }
    }

    /// Drops every socket of an object this node no longer runs.
    pub fn drop_object(&self, id: &ObjectId) {
        self.objects().remove(id);
    }

    /// The object's open sockets, those tagged `tag` only when given, in id order.
    pub fn list(&self, id: &ObjectId, tag: Option<&str>) -> Vec<u64> {
        let objects = self.objects();
        let mut out: Vec<u64> = objects
            .get(id)
            .into_iter()
            .flatten()
            .filter(|(_, s)| tag.is_none_or(|t| s.tags.iter().any(|x| x == t)))
            .map(|(socket, _)| *socket)
            .collect();
        out.sort_unstable();
        out
    }

    pub fn tags(&self, id: &ObjectId, socket: u64) -> Result<Vec<String>, SocketError> {
        let objects = self.objects();
        objects.get(id).and_then(|s| s.get(&socket)).map(|s| s.tags.clone()).ok_or(SocketError::Unknown(socket))
    }

    pub fn count(&self) -> usize {
        self.objects().values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that stops reading gets its socket closed with 1013 once its queue is full,
    /// instead of the object's frames piling up in memory.
    #[test]
    fn a_slow_reader_is_closed_not_buffered() {
        let sockets = Sockets::default();
        let id = ObjectId([7; 32]);
        let socket = sockets.accept(id, Vec::new()).expect("accept");
        let mut frames = sockets.attach(id, socket).expect("attach");
        for n in 0..MAX_QUEUED_FRAMES {
            sockets.send(&id, socket, Frame::Text(format!("{n}"))).expect("within the bound");
        }
        let refused = sockets.send(&id, socket, Frame::Text("one too many".into())).expect_err("over the bound");
        assert!(matches!(refused, SocketError::SlowReader(s) if s == socket), "{refused}");
        assert!(sockets.list(&id, None).is_empty(), "the socket is forgotten");
        let mut last = None;
        while let Ok(frame) = frames.try_recv() {
            last = Some(frame);
        }
        assert_eq!(last, Some(Frame::Close { code: 1013, reason: "the client reads too slowly".into() }));
    }
}
