//! R2's Workers binding: the JavaScript example (`examples/js-r2`, the polyglot pattern
//! `env.R2_BUCKET.get(...)` among its routes) and the Rust one (`examples/r2-files`) on a
//! three-node cluster, each write through one node and its read through another, and 100 MiB
//! streamed in and out of a worker whose memory limit is far below the object's size.

use super::js::cli_deploy;
use super::{cluster, deploy_example, ROLLOUT};
use nimbus_testkit::examples::repo_root;
use nimbus_testkit::Cluster;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// 100 MiB, as the issue asks to stream through a worker.
const BIG: usize = 100 << 20;

/// Bytes that do not repeat in 4 MiB (R2 stores identical chunks once).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn call(
    cluster: &Cluster,
    node: usize,
    worker: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut request = cluster
        .edge()
        .request(method, format!("{}{path}", cluster.nodes[node].url()))
        .header("host", format!("{worker}.workers.localhost"))
        .timeout(Duration::from_secs(300));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let resp = request.body(body).send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    Reply { status, headers, body }
}

/// A PUT whose client dies after 1 MiB of the 8 MiB it declared: the worker's `put` fails
/// and nothing of the object becomes visible through any node.
async fn torn_put_leaves_nothing(cluster: &Cluster, worker: &str, path: &str) {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(bytes(1 << 20, 9)), Err(std::io::Error::other("the client dies"))];
    let sent = cluster
        .edge()
        .put(format!("{}{path}", cluster.nodes[0].url()))
        .header("host", format!("{worker}.workers.localhost"))
        .header("content-length", (8u64 << 20).to_string())
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    assert!(sent.is_err() || sent.is_ok_and(|r| r.status().as_u16() >= 400), "a torn body is never accepted");
    for node in 0..3 {
        let got = call(cluster, node, worker, Method::HEAD, path, &[], Vec::new()).await;
        assert_eq!(got.status, 404, "node {node}: a torn upload is not visible");
    }
}

fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |sum, b| (sum + u64::from(*b)) % 65521)
}

/// Every method of the JavaScript binding, through different nodes: put with HTTP and custom
/// metadata, get (whole, ranged, conditional), head, delete, list with a delimiter and a
/// cursor, multipart, text() and json(), and the polyglot `env.R2_BUCKET.get(...)`.
#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_worker_uses_every_method_of_the_binding_from_every_node() {
    let cluster = cluster(3).await;
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    // The bucket (`media`) is created by the deployment.
    cli_deploy(&cluster, "examples/js-r2").await;
    let js = |node, method, path: &str, headers: &[(&str, &str)], body: Vec<u8>| {
        let path = path.to_string();
        let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let cluster = &cluster;
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            call(cluster, node, "js-r2", method, &path, &headers, body).await
        }
    };

    let text = b"hello, r2 binding".to_vec();
    let put = js(
        0,
        Method::PUT,
        "/objects/docs/hello.txt",
        &[("content-type", "text/plain"), ("x-meta-owner", "ada")],
        text.clone(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let put = put.json();
    assert_eq!(put["size"], 17);
    assert_eq!(put["etag"].as_str().map(str::len), Some(32), "a single put's ETag is its MD5: {put}");
    assert_eq!(put["checksums"]["md5"], put["etag"]);
    assert_eq!(put["customMetadata"], json!({"owner": "ada"}));
    let etag = put["etag"].as_str().expect("etag").to_string();

    // Read-after-write through the other nodes.
    for node in [1, 2] {
        let got = js(node, Method::GET, "/objects/docs/hello.txt", &[], Vec::new()).await;
        assert_eq!((got.status, got.body.as_slice()), (200, text.as_slice()), "node {node}");
        assert_eq!(got.header("content-type"), Some("text/plain"));
        assert_eq!(got.header("etag"), Some(format!("\"{etag}\"").as_str()));
        assert_eq!(got.header("content-length"), Some("17"));
    }
    let ranged = js(2, Method::GET, "/objects/docs/hello.txt", &[("range", "bytes=7-8")], Vec::new()).await;
    assert_eq!((ranged.status, ranged.body.as_slice()), (206, b"r2".as_slice()));
    assert_eq!(ranged.header("content-range"), Some("bytes 7-8/17"));
    let quoted = format!("\"{etag}\"");
    let cached = js(1, Method::GET, "/objects/docs/hello.txt", &[("if-none-match", &quoted)], Vec::new()).await;
    assert_eq!(cached.status, 304, "{}", cached.text());
    let stale = js(1, Method::GET, "/objects/docs/hello.txt", &[("if-match", "\"0000\"")], Vec::new()).await;
    assert_eq!(stale.status, 412, "{}", stale.text());
    let head = js(2, Method::HEAD, "/objects/docs/hello.txt", &[], Vec::new()).await;
    assert_eq!((head.status, head.header("x-object-size")), (200, Some("17")));
    // A conditional put that fails writes nothing.
    let refused = js(0, Method::PUT, "/objects/docs/hello.txt", &[("if-match", "\"0000\"")], b"x".to_vec()).await;
    assert_eq!(refused.status, 412, "{}", refused.text());
    let unchanged = js(2, Method::GET, "/objects/docs/hello.txt", &[], Vec::new()).await;
    assert_eq!(unchanged.body, text);

    // list-after-write, with a delimiter and pages.
    for key in ["docs/a/1", "docs/a/2", "docs/b/1"] {
        let put = js(1, Method::PUT, &format!("/objects/{key}"), &[], key.as_bytes().to_vec()).await;
        assert_eq!(put.status, 200, "{}", put.text());
    }
    let listed = js(2, Method::GET, "/list?prefix=docs/&delimiter=/", &[], Vec::new()).await.json();
    assert_eq!(listed["keys"], json!(["docs/hello.txt"]), "{listed}");
    assert_eq!(listed["delimitedPrefixes"], json!(["docs/a/", "docs/b/"]), "{listed}");
    assert_eq!(listed["contentTypes"], json!(["text/plain"]), "include brings httpMetadata");
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/list?prefix=docs/&limit=2&cursor={c}"),
            None => "/list?prefix=docs/&limit=2".to_string(),
        };
        let page = js(0, Method::GET, &path, &[], Vec::new()).await.json();
        keys.extend(page["keys"].as_array().expect("keys").iter().map(|k| k.as_str().expect("key").to_string()));
        match page["cursor"].as_str() {
            Some(c) if page["truncated"] == true => cursor = Some(c.to_string()),
            _ => break,
        }
    }
    assert_eq!(keys, ["docs/a/1", "docs/a/2", "docs/b/1", "docs/hello.txt"]);

    // Multipart: two parts (R2's 5 MiB minimum for all but the last), through two nodes.
    let created =
        js(0, Method::POST, "/mpu/big.bin", &[("content-type", "application/octet-stream")], Vec::new()).await.json();
    let upload = created["uploadId"].as_str().expect("upload id").to_string();
    let (first, second) = (bytes(5 << 20, 1), bytes(1 << 20, 2));
    let p1 = js(1, Method::PUT, &format!("/mpu/big.bin?uploadId={upload}&part=1"), &[], first.clone()).await.json();
    let p2 = js(2, Method::PUT, &format!("/mpu/big.bin?uploadId={upload}&part=2"), &[], second.clone()).await.json();
    let parts = serde_json::to_vec(&json!([p1, p2])).expect("json");
    let done = js(0, Method::POST, &format!("/mpu/big.bin?uploadId={upload}&action=complete"), &[], parts).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let done = done.json();
    assert!(done["etag"].as_str().is_some_and(|e| e.ends_with("-2")), "multipart ETag: {done}");
    assert_eq!(done["size"], (6 << 20) as u64);
    let whole = js(2, Method::GET, "/objects/big.bin", &[], Vec::new()).await;
    assert_eq!(whole.body.len(), 6 << 20);
    assert!(whole.body[..5 << 20] == first[..] && whole.body[5 << 20..] == second[..], "parts in order");

    // Strings in, text() and json() out.
    let texts = js(1, Method::POST, "/text/note.json", &[], br#"{"n": 42}"#.to_vec()).await.json();
    assert_eq!(texts, json!({"text": "{\"n\": 42}", "json": {"n": 42}, "bodyUsed": true}));

    // The polyglot pattern: env.R2_BUCKET.get(`avatars/${user.id}.jpg`) → size and bytes.
    let avatar = bytes(300_000, 7);
    let put = js(0, Method::PUT, "/objects/avatars/42.jpg", &[("content-type", "image/jpeg")], avatar.clone()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let seen = js(2, Method::GET, "/avatar/42", &[], Vec::new()).await.json();
    assert_eq!(seen, json!({"size": 300_000, "read": 300_000, "sum": sum(&avatar), "contentType": "image/jpeg"}));
    assert_eq!(js(1, Method::GET, "/avatar/7", &[], Vec::new()).await.status, 404);

    // What the worker wrote, the management API lists (one store behind every way in).
    let listed =
        cluster.nimbus(&["--json", "r2", "object", "list", "media", "--prefix", "avatars/"]).await.expect("cli");
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("avatars/42.jpg"));

    torn_put_leaves_nothing(&cluster, "js-r2", "/objects/docs/torn.bin").await;

    // Bad input: a clear error in R2's terms, and nothing written or lost.
    let long = format!("/objects/{}", "k".repeat(1100));
    let refused = js(0, Method::PUT, &long, &[], b"x".to_vec()).await;
    assert!(refused.status == 400 && refused.text().contains("KeyTooLongError"), "{}", refused.text());
    let beyond = js(1, Method::GET, "/objects/docs/hello.txt", &[("range", "bytes=100-200")], Vec::new()).await;
    assert!(beyond.status == 400 && beyond.text().contains("InvalidRange"), "{}", beyond.text());
    let stranger = js(2, Method::PUT, "/mpu/big.bin?uploadId=0123&part=1", &[], b"x".to_vec()).await;
    assert!(stranger.status == 404 && stranger.text().contains("NoSuchUpload"), "{}", stranger.text());
    let paging = js(0, Method::GET, "/list?limit=5000", &[], Vec::new()).await;
    assert!(paging.status == 400 && paging.text().contains("limit must be 1 to 1000"), "{}", paging.text());
    let created = js(0, Method::POST, "/mpu/wrong.bin", &[], Vec::new()).await.json();
    let upload = created["uploadId"].as_str().expect("upload id").to_string();
    let part = js(1, Method::PUT, &format!("/mpu/wrong.bin?uploadId={upload}&part=1"), &[], b"abc".to_vec()).await;
    assert_eq!(part.status, 200, "{}", part.text());
    let wrong =
        serde_json::to_vec(&json!([{"partNumber": 1, "etag": "00000000000000000000000000000000"}])).expect("json");
    let path = format!("/mpu/wrong.bin?uploadId={upload}&action=complete");
    let refused = js(2, Method::POST, &path, &[], wrong).await;
    assert!(refused.status == 400 && refused.text().contains("InvalidPart"), "{}", refused.text());
    assert_eq!(js(0, Method::HEAD, "/objects/wrong.bin", &[], Vec::new()).await.status, 404);
    assert_eq!(js(1, Method::GET, "/objects/docs/hello.txt", &[], Vec::new()).await.body, text);

    // delete-after-write.
    assert_eq!(js(0, Method::DELETE, "/objects/docs/hello.txt", &[], Vec::new()).await.status, 204);
    for node in 0..3 {
        assert_eq!(js(node, Method::GET, "/objects/docs/hello.txt", &[], Vec::new()).await.status, 404);
    }
    cluster.stop().await.expect("stop");
}

/// 100 MiB through a JavaScript worker and a Rust worker, each limited to 64 MiB of memory:
/// the request's body streams into R2 and the object streams back out, byte for byte, through
/// another node, so neither can have been held in the worker.
#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_mib_object_streams_through_workers_limited_to_64_mib() {
    let cluster = cluster(3).await;
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    let source = std::fs::read_to_string(repo_root().join("examples/js-r2/src/index.js")).expect("js-r2 source");
    let limits = json!({"memory_mb": 64, "cpu_ms": 1000, "max_request_body": BIG + 1024});
    let manifest = json!({"bindings": [{"type": "r2", "name": "R2_BUCKET", "bucket_name": "big"}], "limits": limits});
    let resp = cluster.deploy_script("js-big", &[("index.js", &source)], "index.js", manifest).await.expect("deploy");
    assert_eq!(resp.status, 201, "{:?}", resp.body);
    let version = resp.body["version"].as_u64().expect("version");
    cluster.wait_for_version("js-big", version, ROLLOUT).await.expect("rollout");
    let manifest = json!({"bindings": [{"type": "r2", "name": "FILES", "bucket_name": "big"}], "limits": limits});
    deploy_example(&cluster, "rust-big", "r2_files", manifest).await;

    let data = bytes(BIG, 100);
    let length = BIG.to_string();
    let put = call(&cluster, 0, "js-big", Method::PUT, "/objects/js.bin", &[], data.clone()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["size"], BIG as u64);
    let got = call(&cluster, 1, "js-big", Method::GET, "/objects/js.bin", &[], Vec::new()).await;
    assert_eq!((got.status, got.header("content-length")), (200, Some(length.as_str())));
    assert!(got.body == data, "the JavaScript worker's 100 MiB came back whole");

    let put = call(&cluster, 2, "rust-big", Method::PUT, "/files/rust.bin", &[], data.clone()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert!(put.text().starts_with(&format!("rust.bin {BIG} ")), "{}", put.text());
    let got = call(&cluster, 0, "rust-big", Method::GET, "/files/rust.bin", &[], Vec::new()).await;
    assert_eq!((got.status, got.header("content-length")), (200, Some(length.as_str())));
    assert!(got.body == data, "the Rust worker's 100 MiB came back whole");
    // The two workers share the bucket: the JavaScript object through the Rust worker, ranged.
    let range = "bytes=52428800-52428899";
    let ranged = call(&cluster, 1, "rust-big", Method::GET, "/files/js.bin", &[("range", range)], Vec::new()).await;
    assert_eq!(ranged.status, 206, "{}", ranged.text());
    assert_eq!(ranged.body, data[50 << 20..(50 << 20) + 100]);
    // Read into the worker instead, 100 MiB cannot fit in 64 MiB: only that request fails.
    let summed = call(&cluster, 1, "rust-big", Method::GET, "/sum/rust.bin", &[], Vec::new()).await;
    assert!(summed.status >= 500, "{} {}", summed.status, summed.text());
    assert_eq!(call(&cluster, 1, "rust-big", Method::HEAD, "/files/rust.bin", &[], Vec::new()).await.status, 200);
    cluster.stop().await.expect("stop");
}

/// The Rust SDK's binding: head, list, multipart and a small object read into the worker.
#[tokio::test(flavor = "multi_thread")]
async fn a_rust_worker_uses_the_binding_through_the_sdk() {
    let cluster = cluster(3).await;
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    let manifest = json!({"bindings": [{"type": "r2", "name": "FILES", "bucket_name": "files"}]});
    deploy_example(&cluster, "r2-files", "r2_files", manifest).await;
    let rust =
        |node, method, path: &'static str, body: Vec<u8>| call(&cluster, node, "r2-files", method, path, &[], body);

    let small = bytes(10_000, 3);
    let put = rust(0, Method::PUT, "/files/a/small.bin", small.clone()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let summed = rust(1, Method::GET, "/sum/a/small.bin", Vec::new()).await;
    assert_eq!(summed.text(), format!("10000 10000 {}\n", sum(&small)));
    let head = rust(2, Method::HEAD, "/files/a/small.bin", Vec::new()).await;
    assert_eq!((head.status, head.header("x-object-size")), (200, Some("10000")));
    let made = rust(2, Method::POST, "/multipart/a/parts.bin?parts=2&size=5242880", Vec::new()).await;
    assert_eq!(made.status, 200, "{}", made.text());
    assert!(made.text().starts_with("10485760 ") && made.text().trim_end().ends_with("-2"), "{}", made.text());
    let whole = rust(0, Method::GET, "/files/a/parts.bin", Vec::new()).await;
    assert_eq!(whole.body.len(), 10 << 20);
    assert!(whole.body[..5 << 20].iter().all(|b| *b == 1) && whole.body[5 << 20..].iter().all(|b| *b == 2));
    let listed = rust(1, Method::GET, "/list?prefix=a/", Vec::new()).await;
    assert_eq!(listed.text(), "a/parts.bin 10485760\na/small.bin 10000\n");
    torn_put_leaves_nothing(&cluster, "r2-files", "/files/a/torn.bin").await;
    // A worker that leaks the bodies it opens, more often than the node has transfers
    // (`r2.max_transfers`, 32): the node frees each when its request ends, so R2 still serves.
    for _ in 0..40 {
        assert_eq!(rust(0, Method::GET, "/leak/a/parts.bin", Vec::new()).await.status, 200);
    }
    let after = rust(0, Method::GET, "/files/a/parts.bin", Vec::new()).await;
    assert_eq!(
        (after.status, after.body.len()),
        (200, 10 << 20),
        "{}",
        String::from_utf8_lossy(&after.body[..64.min(after.body.len())])
    );
    assert_eq!(rust(0, Method::DELETE, "/files/a/small.bin", Vec::new()).await.status, 204);
    assert_eq!(rust(2, Method::GET, "/files/a/small.bin", Vec::new()).await.status, 404);
    cluster.stop().await.expect("stop");
}
