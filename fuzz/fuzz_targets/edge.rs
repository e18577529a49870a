//! Raw bytes from the network to a real node's two HTTP listeners. The node runs in this
//! process (so the fuzzer sees its coverage) with no workers deployed and one management
//! token. Whatever arrives:
//! - the public edge answers 2xx only for `/healthz` (it serves workers and nothing else);
//! - the management listener answers 2xx only for `/healthz` or with the token;
//! - the node keeps answering `/healthz` afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::Digest;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

const TOKEN: &str = "nimbus-fuzz-token";

struct Node {
    edge: SocketAddr,
    management: SocketAddr,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let (edge, management) = (free_port(), free_port());
        let config = format!(
            r#"
            node_id = "fuzz-1"
            data_dir = "{dir}"
            [http]
            listen = "127.0.0.1:{edge}"
            header_read_timeout_ms = 300
            body_read_timeout_ms = 300
            [management]
            listen = "127.0.0.1:{management}"
            admin_token_sha256 = ["{hash}"]
            [rpc]
            listen = "127.0.0.1:0"
            [gossip]
            listen = "127.0.0.1:0"
            keys = ["{key}"]
            [control_plane]
            url = "http://127.0.0.1:9"
            [tls]
            insecure_plaintext = true
            "#,
            dir = dir.display(),
            hash = hex::encode(sha2::Sha256::digest(TOKEN)),
            key = nimbus_cluster::keyring::Keyring::generate(),
        );
        let config: nimbus_util::config::NodeConfig = toml::from_str(&config).expect("the fuzz node's config");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async {
                if let Err(e) = nimbus_node::run(config, std::future::pending()).await {
                    panic!("the node stopped: {e}");
                }
            })
        });
        let node = Node { edge: ([127, 0, 0, 1], edge).into(), management: ([127, 0, 0, 1], management).into() };
        for _ in 0..600 {
            if healthy(node.edge) && healthy(node.management) {
                return node;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the node did not come up within a minute");
    })
}

/// Sends `request` on a fresh connection and returns what came back before the connection
/// closed (or a second passed).
fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return Vec::new() };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = tcp.write_all(request);
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = tcp.take(64 * 1024).read_to_end(&mut answer);
    answer
}

fn healthy(addr: SocketAddr) -> bool {
    health(addr).is_ok()
}

/// `/healthz` on a fresh connection, or what came back instead.
fn health(addr: SocketAddr) -> Result<(), String> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let read = tcp.take(64 * 1024).read_to_end(&mut answer);
    if answer.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("read {read:?}: {:?}", String::from_utf8_lossy(&answer)))
    }
}

/// Status codes of every response in `answer` (pipelined requests get several).
fn statuses(answer: &[u8]) -> Vec<u16> {
    answer
        .windows(9)
        .enumerate()
        .filter(|(i, w)| *w == b"HTTP/1.1 " && (*i == 0 || answer[i - 1] == b'\n'))
        .filter_map(|(i, _)| std::str::from_utf8(answer.get(i + 9..i + 12)?).ok()?.parse().ok())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

fuzz_target!(|data: &[u8]| {
    let node = node();
    let Some((&plane, request)) = data.split_first() else { return };
    let to_management = plane & 1 == 1;
    let addr = if to_management { node.management } else { node.edge };
    let answer = exchange(addr, request);
    let asks_health = contains(request, b"/healthz");
    for status in statuses(&answer) {
        if (200..300).contains(&status) && !asks_health {
            assert!(
                to_management && contains(request, TOKEN.as_bytes()),
                "{} answered {status} to {:?}",
                if to_management { "management" } else { "the edge" },
                String::from_utf8_lossy(request)
            );
        }
    }
    if plane == 0xff {
        // A node that stalls answers again within seconds; one that stopped never does.
        let started = std::time::Instant::now();
        let mut last = health(node.edge);
        while last.is_err() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
            last = health(node.edge);
        }
        if let Err(e) = last {
            panic!("the edge stopped answering /healthz: {e}");
        }
        if started.elapsed() > Duration::from_secs(1) {
            eprintln!("edge: /healthz answered again after {:?}", started.elapsed());
        }
    }
});
