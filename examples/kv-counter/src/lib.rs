//! Counts visits per path in Workers KV: `GET /<name>` increments and returns the counter
//! stored under `<name>` in the namespace bound as `COUNTERS`.
//!
//! `GET /_timing/<name>?n=<count>` reads `<name>` `count` times and answers with the median
//! and mean time of one read as the worker sees it (`p50_ns mean_ns`), for `bench/kv`.

struct Counter;

fn read_timing(key: &str, n: usize) -> nimbus::Result<nimbus::Response> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = std::time::Instant::now();
        if let Err(e) = nimbus::kv::get("COUNTERS", key) {
            return Ok(nimbus::Response::text(format!("kv get failed: {e:?}\n")).with_status(500));
        }
        times.push(started.elapsed().as_nanos() as u64);
    }
    times.sort_unstable();
    let p50 = times.get(n / 2).copied().unwrap_or(0);
    let mean = times.iter().sum::<u64>() / (n.max(1) as u64);
    Ok(nimbus::Response::text(format!("{p50} {mean}\n")))
}

impl nimbus::Handler for Counter {
    fn fetch(req: nimbus::Request) -> nimbus::Result<nimbus::Response> {
        let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
        if let Some(key) = path.strip_prefix("/_timing/") {
            let n = query.strip_prefix("n=").and_then(|n| n.parse().ok()).unwrap_or(1000usize);
            return read_timing(key, n.clamp(1, 100_000));
        }
        let key = path.trim_start_matches('/');
        let key = if key.is_empty() { "root" } else { key };
        let current = match nimbus::kv::get("COUNTERS", key) {
            Ok(Some(entry)) => String::from_utf8_lossy(&entry.value).parse::<u64>().unwrap_or(0),
            Ok(None) => 0,
            Err(e) => return Ok(nimbus::Response::text(format!("kv get failed: {e:?}\n")).with_status(500)),
        };
        let next = current + 1;
        let options = nimbus::kv::PutOptions { expiration: None, expiration_ttl: None, metadata: None };
        if let Err(e) = nimbus::kv::put("COUNTERS", key, next.to_string().as_bytes(), &options) {
            return Ok(nimbus::Response::text(format!("kv put failed: {e:?}\n")).with_status(500));
        }
        Ok(nimbus::Response::text(format!("{next}\n")))
    }
}

nimbus::export!(Counter);
