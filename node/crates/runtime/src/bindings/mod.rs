//! What a guest can reach: the per-instance host state and the Nimbus bindings, one file
//! per binding.
//!
//! A guest gets WASI with no preopened directories, no environment, no arguments and no
//! sockets; `wasi:http/outgoing-handler` only to the hosts its manifest allows; and the
//! `nimbus:worker` binding interfaces. A binding call names a binding; one the deployment did
//! not declare (or declared with another kind) gets `unknown-binding`. No binding call traps:
//! every store error becomes a [`BindingError`] in the binding's own file.
//!
//! # Layout
//! - [`Host`]: the `T` of every `Store<T>`; [`Stores`]: the node's services a binding reaches;
//!   [`Declared`]: the bindings a deployment declared, looked up by name.
//! - `kv`, `d1`, `durable` (stubs), `storage` (an object's own storage), `websocket`,
//!   `console`, `r2` (bodies as `wasi:io` streams in the table), `queue` (producers): one
//!   `nimbus:worker` interface each.
//! - outbound HTTP: [`nimbus_wasm::OutboundPolicy`], by the manifest's allow-list.
//!
//! Adding a binding: its WIT interface in `wit/`, a store in [`Stores`], one file here with
//! `impl nimbus::worker::<interface>::Host for Host`, and its kind in [`Declared`]'s callers.

mod console;
mod d1;
mod durable;
mod kv;
mod queue;
mod r2;
mod storage;
mod websocket;

use crate::limits::{CpuBudget, MemoryGuard};
use nimbus_proto::manifest::Binding;
use nimbus_wasm::OutboundPolicy;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

wasmtime::component::bindgen!({
    path: "../../../wit",
    world: "nimbus:worker/durable-class",
    imports: { default: async },
    exports: { default: async },
    // R2's bodies are `wasi:io` streams: the same resources `wasmtime-wasi` keeps in the table.
    with: { "wasi:io": wasmtime_wasi::p2::bindings::io },
});

pub use nimbus::worker::types::BindingError;

/// The handlers of events that are not HTTP requests (queue batches, cron ticks): exports the
/// host finds one by one, since a worker exports only those it has.
pub mod events {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "nimbus:worker/event-handlers",
        exports: { default: async },
    });
    pub use exports::nimbus::worker::{queue_handler, scheduled_handler};
}

/// The body of a worker's response, streamed from the guest.
pub type ResponseBody = HyperOutgoingBody;

/// Links the `nimbus:worker` interfaces, one by one: the world's own `add_to_linker` would
/// link `wasi:io` a second time (R2's bodies use it), which `wasmtime-wasi` already provides.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<Host>) -> wasmtime::Result<()> {
    use nimbus::worker::{console, d1, durable_objects, kv, queue, r2, storage, types, websocket};
    use wasmtime::component::HasSelf;
    types::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)?;
    console::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)?;
    kv::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)?;
    d1::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)?;
    durable_objects::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)?;
    storage::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)?;
    websocket::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)?;
    r2::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)?;
    queue::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)?;
    Ok(())
}

/// The node's services that bindings reach; built before the runtime and handed to it.
#[derive(Clone)]
pub struct Stores {
    pub kv: nimbus_kv::KvStore,
    pub d1: nimbus_d1::D1,
    pub durable: nimbus_durable::Durable,
    pub r2: nimbus_r2::R2,
    pub queues: nimbus_queues::Queues,
    /// Answers `env.ASSETS` of Pages Functions workers (`nimbus_wasm::ASSETS_HOST`).
    pub local: Option<Arc<dyn nimbus_wasm::LocalService>>,
}

/// The bindings one deployment declared, by name.
#[derive(Clone)]
pub struct Declared {
    worker: Arc<str>,
    bindings: Arc<[Binding]>,
}

impl Declared {
    pub fn new(worker: Arc<str>, bindings: Arc<[Binding]>) -> Self {
        Declared { worker, bindings }
    }

    /// The binding `name`, if it was declared with `kind`; otherwise `unknown-binding`
    /// naming what was declared.
    pub fn get(&self, name: &str, kind: &'static str) -> Result<&Binding, BindingError> {
        match self.bindings.iter().find(|b| b.name() == name) {
            Some(b) if b.kind() == kind => Ok(b),
            Some(b) => Err(BindingError::UnknownBinding(format!(
                "binding `{name}` of worker `{}` is a {} binding, not {kind}",
                self.worker,
                b.kind()
            ))),
            None => {
                let declared: Vec<&str> =
                    self.bindings.iter().filter(|b| b.kind() == kind).map(Binding::name).collect();
                Err(BindingError::UnknownBinding(format!(
                    "worker `{}` has no {kind} binding named `{name}` (declared: {})",
                    self.worker,
                    if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                )))
            }
        }
    }
}

/// The `T` of every `Store<T>` that runs a worker.
pub struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: OutboundPolicy,
    pub(crate) memory: MemoryGuard,
    pub(crate) cpu: CpuBudget,
    declared: Declared,
    stores: Stores,
    /// The object this instance runs for, when it is an instance of a Durable Object class.
    object: Option<nimbus_durable::ObjectContext>,
    /// The R2 bodies the current event opened (emptied when it ends).
    r2_bodies: Vec<r2::BodySlot>,
}

impl Host {
    pub fn new(
        declared: Declared,
        outbound: Arc<[String]>,
        guard: Arc<nimbus_wasm::AddressGuard>,
        memory_limit: usize,
        stores: Stores,
        object: Option<nimbus_durable::ObjectContext>,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        // Guest output goes to the node's stderr (the node's log stream), never to stdout,
        // which carries only the node's own readiness line.
        wasi.stdout(wasmtime_wasi::cli::stderr());
        wasi.inherit_stderr();
        wasi.allow_tcp(false);
        wasi.allow_udp(false);
        wasi.allow_ip_name_lookup(false);
        let mut outbound = OutboundPolicy::new(outbound, guard);
        if let Some(local) = &stores.local {
            outbound = outbound.with_local(local.clone(), declared.worker.clone());
        }
        Host {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound,
            memory: MemoryGuard::new(memory_limit),
            cpu: CpuBudget::default(),
            declared,
            stores,
            object,
            r2_bodies: Vec::new(),
        }
    }

    fn worker(&self) -> &str {
        &self.declared.worker
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

impl nimbus::worker::types::Host for Host {}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(bindings: Vec<Binding>) -> Declared {
        Declared::new("w".into(), bindings.into())
    }

    #[test]
    fn binding_errors_name_the_binding_and_the_declared_ones() {
        let declared = declared(vec![Binding::Kv { name: "CACHE".into(), namespace_id: "n".into() }]);
        match declared.get("NOPE", "kv") {
            Err(BindingError::UnknownBinding(msg)) => assert!(msg.contains("NOPE") && msg.contains("CACHE"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(declared.get("CACHE", "kv"), Ok(Binding::Kv { .. })));
        match declared.get("CACHE", "d1") {
            Err(BindingError::UnknownBinding(msg)) => assert!(msg.contains("is a kv binding"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
