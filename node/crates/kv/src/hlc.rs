//! A hybrid logical clock: wall-clock milliseconds in the high bits, a counter in the low
//! bits. Timestamps it hands out never go backwards and always exceed every timestamp it has
//! observed, so a write made after seeing another orders after it, whatever the clocks say.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

pub const LOGICAL_BITS: u32 = 16;

#[derive(Debug, Default)]
pub struct Hlc {
    last: AtomicU64,
}

/// The order of writes: higher `hlc` wins, ties broken by node id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub hlc: u64,
    pub node: String,
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn wall() -> u64 {
    wall_ms() << LOGICAL_BITS
}

impl Hlc {
    /// A timestamp greater than any this clock has issued or observed.
    pub fn now(&self) -> u64 {
        let wall = wall();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last + 1);
            match self.last.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(current) => last = current,
            }
        }
    }

    /// Moves the clock past a timestamp seen from another node.
    pub fn observe(&self, remote: u64) {
        self.last.fetch_max(remote, Ordering::AcqRel);
    }
}
