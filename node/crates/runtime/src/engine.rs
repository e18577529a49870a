//! The wasmtime engine every worker on the node shares, and the thread that drives its epoch.

use super::limits::TICK;
use super::RuntimeError;
use nimbus_util::config::RuntimeConfig;
use std::sync::Arc;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Largest memory any worker may be configured for (the manifest caps `memory_mb` at 4096).
const MAX_MEMORY_BYTES: usize = 4 << 30;

pub fn build(config: &RuntimeConfig) -> Result<Engine, RuntimeError> {
    let slots = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots);
    // A Rust component holds a few core instances (the program plus wit-component shims),
    // one or two memories and several tables.
    pool.total_core_instances(slots.saturating_mul(8));
    pool.total_memories(slots.saturating_mul(2));
    pool.total_tables(slots.saturating_mul(8));
    pool.total_stacks(slots);
    pool.max_memory_size(MAX_MEMORY_BYTES);
    // Keep the first pages of a returned slot resident: the next instance of the same
    // worker usually touches them again.
    pool.linear_memory_keep_resident(64 * 1024);

    let mut wasm = Config::new();
    wasm.epoch_interruption(true);
    wasm.memory_init_cow(true);
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Deployments of one language share most of their code (every JavaScript worker is the
    // same engine with other data): compile each function once per process.
    wasm.enable_incremental_compilation(Arc::new(nimbus_wasm::FunctionCache::default()))
        .map_err(|e| RuntimeError::Internal(format!("cannot configure wasmtime: {e}")))?;
    Engine::new(&wasm).map_err(|e| RuntimeError::Internal(format!("cannot configure wasmtime: {e}")))
}

/// Advances the engine's epoch every [`TICK`] until the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("nimbus-epoch".into()).spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(TICK);
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch thread, CPU limits will not apply: {e}");
    }
}
