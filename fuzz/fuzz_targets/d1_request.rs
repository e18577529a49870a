//! A D1 query body as the REST API takes it, run on a real SQLite replica the way the state
//! machine applies a log entry: bad JSON, bad parameters and bad SQL end the request with an
//! error, never the entry (which would stop the node's Raft group).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_d1::fuzzing::Replica;
use std::sync::{Mutex, OnceLock};

fn replica() -> &'static Mutex<(Replica, tempfile::TempDir)> {
    static REPLICA: OnceLock<Mutex<(Replica, tempfile::TempDir)>> = OnceLock::new();
    REPLICA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        // A small budget per statement keeps a runaway query to milliseconds.
        let mut replica = Replica::open(dir.path(), 200_000);
        replica
            .run(vec![nimbus_d1::Statement { sql: "CREATE TABLE t (k TEXT PRIMARY KEY, v)".into(), params: vec![] }]);
        Mutex::new((replica, dir))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(statements) = nimbus_node::http::fuzz_query_body(data) else { return };
    let mut guard = replica().lock().unwrap_or_else(|p| p.into_inner());
    guard.0.run(statements);
});
