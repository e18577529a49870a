//! Custom broadcasts ("rumors") that upper layers spread through SWIM's own datagrams.
//!
//! foca piggybacks rumors on its protocol messages and passes on every rumor a node reports
//! as news, until each has been sent `max_transmissions` times; a node that already knew it
//! says so and the rumor stops there. The upper layer decides what is news ([`Rumors`]): KV
//! answers by merging the entry and reporting whether its version won.

use super::Member;
use foca::{BroadcastHandler, Invalidates};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What a rumor is about and how new it is: a rumor invalidates an older one (lower `order`)
/// about the same `subject`, which foca then stops spreading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RumorId {
    pub subject: Vec<u8>,
    /// Compared as bytes: higher is newer.
    pub order: Vec<u8>,
}

impl Invalidates for RumorId {
    fn invalidates(&self, other: &Self) -> bool {
        self.subject == other.subject && self.order >= other.order
    }
}

#[derive(Debug, thiserror::Error)]
#[error("rumor: {0}")]
pub struct RumorError(pub String);

/// The layer that owns a kind of rumor.
pub trait Rumors: Send + Sync + 'static {
    /// Identifies a rumor this node starts; it is already applied locally.
    fn identify(&self, data: &[u8]) -> Result<RumorId, RumorError>;
    /// Applies a rumor heard from a peer; `Some` when it was news, so it is passed on.
    fn apply(&self, data: &[u8]) -> Result<Option<RumorId>, RumorError>;
}

/// Rumors nobody handles: a node without replicated state.
pub struct NoRumors;

impl Rumors for NoRumors {
    fn identify(&self, _: &[u8]) -> Result<RumorId, RumorError> {
        Err(RumorError("this node spreads no rumors".into()))
    }

    fn apply(&self, _: &[u8]) -> Result<Option<RumorId>, RumorError> {
        Ok(None)
    }
}

/// foca's side of [`Rumors`]; counts news so the actor can push it on at once instead of
/// waiting for the next protocol message to piggyback on.
pub(super) struct RumorHandler {
    pub rumors: Arc<dyn Rumors>,
    pub fresh: Arc<AtomicUsize>,
}

impl BroadcastHandler<Member> for RumorHandler {
    type Key = RumorId;
    type Error = RumorError;

    fn receive_item(&mut self, data: &[u8], sender: Option<&Member>) -> Result<Option<RumorId>, RumorError> {
        let id = match sender {
            None => Some(self.rumors.identify(data)?),
            Some(_) => self.rumors.apply(data)?,
        };
        if id.is_some() {
            self.fresh.fetch_add(1, Ordering::Relaxed);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_rumor_about_the_same_subject_replaces_the_older() {
        let id = |subject: &[u8], order: &[u8]| RumorId { subject: subject.to_vec(), order: order.to_vec() };
        assert!(id(b"k", b"\x02").invalidates(&id(b"k", b"\x01")));
        assert!(!id(b"k", b"\x01").invalidates(&id(b"k", b"\x02")));
        assert!(!id(b"j", b"\x09").invalidates(&id(b"k", b"\x01")));
    }
}
