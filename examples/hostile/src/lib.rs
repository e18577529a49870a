//! A worker that misbehaves on purpose, one way per path, so tests can check that the
//! node ends only the offending request: `/loop` spins forever (CPU limit), `/alloc` grows
//! memory without bound (memory limit), `/trap` executes `unreachable`, `/panic` panics,
//! `/fs` tries to read `/etc/passwd` (no host filesystem), `/env` lists the environment
//! (empty), `/binding` calls a KV binding the deployment did not declare, `/count` returns
//! a per-instance counter (globals persist while an instance is reused), `/big?n=` returns
//! an n-byte body, `/fetch?url=` fetches a URL (allowed only by `allowed_outbound_hosts`).

use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

struct Hostile;

impl nimbus::Handler for Hostile {
    fn fetch(req: nimbus::Request) -> nimbus::Result<nimbus::Response> {
        let path = req.path.split('?').next().unwrap_or("/");
        match path {
            "/loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "/alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/trap" => {
                #[cfg(target_arch = "wasm32")]
                core::arch::wasm32::unreachable();
                #[cfg(not(target_arch = "wasm32"))]
                unreachable!()
            }
            "/panic" => panic!("this worker panics on purpose"),
            "/fs" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Ok(nimbus::Response::text(text)),
                Err(e) => Ok(nimbus::Response::text(format!("denied: {e}\n")).with_status(403)),
            },
            "/env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                Ok(nimbus::Response::text(format!("env: {vars:?}\n")))
            }
            "/binding" => match nimbus::kv::get("NOT_DECLARED", "key") {
                Ok(_) => Ok(nimbus::Response::text("unexpected success\n").with_status(500)),
                Err(e) => Ok(nimbus::Response::text(format!("{e:?}\n")).with_status(424)),
            },
            "/count" => {
                let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(nimbus::Response::text(format!("{n}\n")))
            }
            "/big" => {
                let n: usize = req
                    .path
                    .split("n=")
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1024);
                Ok(nimbus::Response::new(200, vec![b'x'; n]))
            }
            "/fetch" => {
                let url = req.path.split_once("url=").map(|(_, u)| u).unwrap_or("");
                match nimbus::fetch("GET", url, &[], b"") {
                    Ok(resp) => Ok(nimbus::Response::new(resp.status, resp.body)),
                    Err(e) => Ok(nimbus::Response::text(format!("fetch failed: {e}\n")).with_status(502)),
                }
            }
            _ => Ok(nimbus::Response::text("ok\n")),
        }
    }
}

nimbus::export!(Hostile);
