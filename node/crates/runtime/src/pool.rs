//! Warm instances of one worker, ready for the next request.
//!
//! An instance serves one request at a time. After a clean request it comes back here (most
//! recently used first, so its memory is still hot) unless it is due for retirement; after a
//! trap or a limit hit it is dropped instead and never serves again.

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

pub struct Pool {
    idle: Mutex<Vec<Instance>>,
    max_idle: usize,
}

impl Pool {
    pub fn new(max_idle: usize) -> Self {
        Pool { idle: Mutex::new(Vec::with_capacity(max_idle)), max_idle }
    }

    pub fn take(&self) -> Option<Instance> {
        self.idle.lock().ok()?.pop()
    }

    /// Keeps `instance` for a later request; drops it when the pool is full.
    pub fn put(&self, instance: Instance) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.max_idle {
                idle.push(instance);
            }
        }
    }

    pub fn idle(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }
}
