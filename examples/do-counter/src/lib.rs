//! A counter per name, kept by a Durable Object: `GET /<name>` increments the counter
//! `<name>` and answers its new value, from whichever node the request reaches.
//!
//! More paths, for the tests and `bench/do`:
//! - `GET /<name>/value`: the value without incrementing;
//! - `POST /<name>/alarm?in_ms=N&fail=K`: sets the object's alarm N ms from now; its first K
//!   runs fail (to exercise retries);
//! - `GET /<name>/fired`: how many times the alarm handler succeeded;
//! - `POST /<name>/big`: tries to store a value over the 128 KiB limit;
//! - `POST /<name>/txn-fail`: a transaction that writes, then fails;
//! - `GET /id/<hex>/value`: the counter of an id handed back by a client (`idFromString`).

use nimbus::durable::{Namespace, Storage};
use nimbus::{BindingError, DurableObject, Request, Response, State};

struct Worker;

fn binding_error(e: BindingError) -> Response {
    match e {
        BindingError::InvalidInput(m) => Response::text(format!("invalid input: {m}\n")).with_status(400),
        BindingError::UnknownBinding(m) => Response::text(format!("unknown binding: {m}\n")).with_status(500),
        BindingError::Unavailable(m) => Response::text(format!("unavailable: {m}\n")).with_status(503),
        BindingError::Internal(m) => Response::text(format!("internal: {m}\n")).with_status(500),
    }
}

impl nimbus::Handler for Worker {
    fn fetch(req: Request) -> nimbus::Result<Response> {
        let counters = Namespace::new("COUNTER");
        let path = req.path.split('?').next().unwrap_or("/").trim_start_matches('/');
        let (target, rest) = match path.strip_prefix("id/") {
            Some(tail) => {
                let (hex, rest) = tail.split_once('/').unwrap_or((tail, ""));
                (counters.id_from_string(hex), rest)
            }
            None => {
                let (name, rest) = path.split_once('/').unwrap_or((path, ""));
                let name = if name.is_empty() { "default" } else { name };
                (counters.id_from_name(name), rest)
            }
        };
        let id = match target {
            Ok(id) => id,
            Err(e) => return Ok(binding_error(e)),
        };
        let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let forwarded = Request { path: format!("/{rest}?{query}"), ..req };
        Ok(counters.get(&id).fetch(&forwarded).unwrap_or_else(binding_error))
    }
}

nimbus::export!(Worker);

/// The object: a count, an alarm counter, and the failures still to simulate.
struct Counter {
    storage: Storage,
}

fn param(query: &str, name: &str) -> Option<i64> {
    query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl DurableObject for Counter {
    fn new(state: State) -> Self {
        Counter { storage: state.storage }
    }

    fn fetch(&mut self, req: Request) -> nimbus::Result<Response> {
        let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
        let storage = &self.storage;
        let answer = |r: Result<Response, BindingError>| Ok(r.unwrap_or_else(binding_error));
        match (req.method.as_str(), path) {
            ("GET", "/") | ("POST", "/") => answer((|| {
                let next = storage.get_u64("count")?.unwrap_or(0) + 1;
                storage.put("count", next.to_string())?;
                Ok(Response::text(format!("{next}\n")))
            })()),
            ("GET", "/value") => answer((|| {
                Ok(Response::text(format!("{}\n", storage.get_u64("count")?.unwrap_or(0))))
            })()),
            ("POST", "/alarm") => answer((|| {
                let at = now_ms() + param(query, "in_ms").unwrap_or(0);
                storage.put("fail", param(query, "fail").unwrap_or(0).to_string())?;
                storage.set_alarm(at)?;
                Ok(Response::text(format!("{at}\n")))
            })()),
            ("GET", "/fired") => answer((|| {
                let fired = storage.get_u64("fired")?.unwrap_or(0);
                let pending = storage.get_alarm()?.map_or("none".to_string(), |at| at.to_string());
                Ok(Response::text(format!("{fired} {pending}\n")))
            })()),
            ("POST", "/big") => answer(storage.put("big", vec![0u8; 128 * 1024 + 1]).map(|()| Response::text("stored\n"))),
            ("POST", "/txn-fail") => {
                let result: nimbus::Result<()> = storage.transaction(|txn| {
                    txn.put("count", "1000000");
                    txn.put("other", "x");
                    Err("the transaction gives up".into())
                });
                Ok(Response::text(format!("{}\n", result.err().map(|e| e.to_string()).unwrap_or_default()))
                    .with_status(409))
            }
            _ => Ok(Response::new(404, "no such path\n")),
        }
    }

    fn alarm(&mut self, _retry_count: u32) -> nimbus::Result<()> {
        let failures_left = self.storage.get_u64("fail")?.unwrap_or(0);
        if failures_left > 0 {
            self.storage.put("fail", (failures_left - 1).to_string())?;
            return Err(format!("failing on purpose, {} more to go", failures_left - 1).into());
        }
        let fired = self.storage.get_u64("fired")?.unwrap_or(0) + 1;
        self.storage.put("fired", fired.to_string())?;
        Ok(())
    }
}

nimbus::durable_objects!(Counter);
