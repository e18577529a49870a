//! The `KvPeer` service's messages (a pushed entry, bucket versions, a fetch) against a real
//! RocksDB replica: a peer's bytes are refused or applied, never fatal to the store.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_kv::KvStore;
use nimbus_util::metrics::Metrics;
use std::sync::{Arc, OnceLock};

struct Replica {
    kv: KvStore,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

fn replica() -> &'static Replica {
    static REPLICA: OnceLock<Replica> = OnceLock::new();
    REPLICA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = nimbus_storage::Storage::open(dir.path()).expect("storage");
        let metrics = Arc::new(Metrics::new());
        let (kv, _changes) = KvStore::open(storage, "fuzz", 60, 500, metrics.clone()).expect("kv");
        for namespace in ["ns", "a", "x"] {
            kv.declare_namespace(namespace, None).expect("namespace");
        }
        Replica { kv, metrics, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let replica = replica();
    nimbus_kv::fuzzing::peer_message(&replica.kv, &replica.metrics, data);
});
