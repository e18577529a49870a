//! The route table every node builds from its workers' routes: lookups never panic, they name
//! a worker that exists, and the answer does not depend on the order workers arrived in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_runtime::RouteTable;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Lines: `worker route route…` for each worker, then `? host path` lookups.
    let mut workers: Vec<(String, Vec<String>)> = Vec::new();
    let mut lookups = Vec::new();
    for line in text.lines().take(64) {
        let mut words = line.split(' ');
        match words.next() {
            Some("?") => lookups.push((words.next().unwrap_or("").to_owned(), words.next().unwrap_or("/").to_owned())),
            Some(name) if !name.is_empty() => workers.push((name.to_owned(), words.map(str::to_owned).collect())),
            _ => {}
        }
    }
    let forward = RouteTable::build("workers.localhost", workers.iter().map(|(n, r)| (n.as_str(), r.as_slice())));
    let backward =
        RouteTable::build("workers.localhost", workers.iter().rev().map(|(n, r)| (n.as_str(), r.as_slice())));
    for (host, path) in &lookups {
        let found = forward.lookup(host, path);
        if let Some(worker) = found {
            assert!(workers.iter().any(|(n, _)| n == worker), "{worker} is not a worker");
        }
        // Two workers of the same name (the control plane never sends that) may tie.
        let unique = workers.iter().map(|(n, _)| n).collect::<std::collections::HashSet<_>>().len() == workers.len();
        if unique {
            assert_eq!(found, backward.lookup(host, path), "lookup of {host}{path} depends on arrival order");
        }
        let _ = forward.claims_host(host);
    }
});
