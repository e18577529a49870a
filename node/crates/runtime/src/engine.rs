//! The wasmtime engine every worker on the node shares, the compiler that makes its machine
//! code, and the thread that drives its epoch.
//!
//! The shared engine never compiles. Cranelift keeps its scratch space (register allocator
//! buffers, arenas: over 15 MiB after the JavaScript engine component) in the engine that
//! compiled, for the next compile, for as long as that engine lives. Deployments are rare, so
//! each compile gets a [`Compiler`] engine of its own, with the same settings, and the scratch
//! goes back to the allocator with it.

use super::limits::TICK;
use super::RuntimeError;
use nimbus_util::config::RuntimeConfig;
use nimbus_wasm::FunctionCache;
use std::sync::Arc;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Largest memory any worker may be configured for (the manifest caps `memory_mb` at 4096).
const MAX_MEMORY_BYTES: usize = 4 << 30;

/// Compiles components for the shared engine, each with an engine of its own.
pub struct Compiler {
    config: Config,
}

impl Compiler {
    /// Machine code for `source` that the shared engine loads with `Component::deserialize`.
    pub fn precompile_component(&self, source: &[u8]) -> wasmtime::Result<Vec<u8>> {
        Engine::new(&self.config)?.precompile_component(source)
    }
}

/// The settings compiled code depends on, the same for the shared engine and the compiler.
/// Deployments of one language share most of their code (every JavaScript worker is the same
/// engine with other data): `functions` lets each function be compiled once per node.
fn code_settings(functions: Arc<FunctionCache>) -> Result<Config, RuntimeError> {
    let mut wasm = Config::new();
    wasm.epoch_interruption(true);
    wasm.memory_init_cow(true);
    wasm.enable_incremental_compilation(functions)
        .map_err(|e| RuntimeError::Internal(format!("cannot configure wasmtime: {e}")))?;
    Ok(wasm)
}

/// The shared engine and its compiler.
pub fn build(config: &RuntimeConfig, functions: Arc<FunctionCache>) -> Result<(Engine, Compiler), RuntimeError> {
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
    // By default a returned slot gives all its pages back. Keeping the first 64 KiB resident
    // for the next instance saves ~20 µs per fresh instance but keeps that much of every slot
    // ever used, for good: 6 MiB after a burst of 32 connections on 10 workers, and up to
    // `max_instances` × 64 KiB.
    let keep_resident = usize::try_from(config.pool.keep_resident_kb.saturating_mul(1024)).unwrap_or(usize::MAX);
    pool.linear_memory_keep_resident(keep_resident);

    let compiler = Compiler { config: code_settings(functions)? };
    let mut wasm = compiler.config.clone();
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&wasm).map_err(|e| RuntimeError::Internal(format!("cannot configure wasmtime: {e}")))?;
    Ok((engine, compiler))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{DefaultHasher, Hash, Hasher};

    fn compatibility(engine: &Engine) -> u64 {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn the_compiler_makes_code_the_shared_engine_accepts() {
        let config = RuntimeConfig::default();
        let (engine, compiler) = build(&config, Arc::new(FunctionCache::default())).expect("engines");
        let per_compile = Engine::new(&compiler.config).expect("compile engine");
        assert_eq!(compatibility(&engine), compatibility(&per_compile));
    }
}
