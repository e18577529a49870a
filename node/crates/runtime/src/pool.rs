//! Warm instances of one worker, ready for the next request.
//!
//! An instance serves one request at a time. After a clean request it comes back here (most
//! recently used first, so its memory is still hot) unless it is due for retirement; after a
//! trap or a limit hit it is dropped instead and never serves again. Instances idle longer
//! than `runtime.pool.idle_timeout_ms` are reaped, and the runtime drops the oldest idle
//! instances of any worker while their memory is over the node's idle budget.

use crate::bindings::Host;
use std::sync::Mutex;
use std::time::Instant;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

pub struct Instance {
    pub store: Store<Host>,
    pub proxy: Proxy,
    /// Requests this instance has completed.
    pub served: u64,
    pub born: Instant,
}

struct Idle {
    instance: Instance,
    since: Instant,
}

pub struct Pool {
    /// Oldest first: `take` pops the most recently used.
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
}

impl Pool {
    pub fn new(max_idle: usize) -> Self {
        Pool { idle: Mutex::new(Vec::new()), max_idle }
    }

    pub fn take(&self) -> Option<Instance> {
        self.idle.lock().ok()?.pop().map(|idle| idle.instance)
    }

    /// Keeps `instance` for a later request; drops it when the pool is full.
    pub fn put(&self, instance: Instance) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.max_idle {
                idle.push(Idle { instance, since: Instant::now() });
            }
        }
    }

    pub fn idle(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    /// Drops the instances idle for longer than `after`; how many it dropped.
    pub fn reap(&self, after: std::time::Duration) -> usize {
        let Ok(mut idle) = self.idle.lock() else { return 0 };
        let before = idle.len();
        idle.retain(|i| i.since.elapsed() < after);
        before - idle.len()
    }

    /// Linear memory held by idle instances, and when the oldest of them went idle.
    pub fn idle_memory(&self) -> (usize, Option<Instant>) {
        let Ok(idle) = self.idle.lock() else { return (0, None) };
        (idle.iter().map(|i| i.instance.store.data().memory.current).sum(), idle.first().map(|i| i.since))
    }

    /// Drops the instance idle the longest; the memory it held.
    pub fn drop_oldest(&self) -> usize {
        let Ok(mut idle) = self.idle.lock() else { return 0 };
        if idle.is_empty() {
            return 0;
        }
        idle.remove(0).instance.store.data().memory.current
    }
}
