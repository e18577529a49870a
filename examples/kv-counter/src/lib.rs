//! Counts visits per path in Workers KV: `GET /<name>` increments and returns the counter
//! stored under `<name>` in the namespace bound as `COUNTERS`.

struct Counter;

impl nimbus::Handler for Counter {
    fn fetch(req: nimbus::Request) -> nimbus::Result<nimbus::Response> {
        let key = req.path.trim_start_matches('/').split('?').next().unwrap_or("");
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
