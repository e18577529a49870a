//! The trust boundaries as a stranger and as a scoped operator meet them: nothing but workers
//! and `/healthz` on the public edge, tokens with scopes on the management API and the control
//! plane, revocation reaching every node.

use nimbus_testkit::{Cluster, ClusterSpec};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The sum of the metric lines of node `index` that start with `prefix`.
async fn metric(cluster: &Cluster, index: usize, prefix: &str) -> f64 {
    let url = format!("{}/metrics", cluster.nodes[index].api_url());
    let text = cluster.http().get(url).send().await.expect("metrics").text().await.expect("metrics body");
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Every management path a node serves, as a stranger would try them on the edge.
const MANAGEMENT_PATHS: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/v1/node"),
    ("GET", "/v1/node/kv"),
    ("GET", "/v1/node/d1"),
    ("GET", "/v1/node/durable"),
    ("GET", "/v1/cluster"),
    ("GET", "/v1/admin/faults"),
    ("POST", "/v1/admin/faults"),
    ("GET", "/v1/kv/namespaces"),
    ("PUT", "/v1/kv/namespaces/stolen"),
    ("PUT", "/v1/kv/stolen/values/k"),
    ("GET", "/v1/kv/stolen/values/k"),
    ("GET", "/v1/d1/databases"),
    ("PUT", "/v1/d1/databases/stolen"),
    ("POST", "/v1/d1/stolen/query"),
    ("POST", "/v1/d1/stolen/exec"),
    ("GET", "/v1/r2/buckets"),
    ("POST", "/v1/r2/buckets"),
    ("DELETE", "/v1/r2/buckets/stolen"),
    ("GET", "/v1/r2/buckets/stolen/objects"),
    ("PUT", "/v1/r2/buckets/stolen/objects/k"),
    ("GET", "/v1/r2/buckets/stolen/objects/k"),
    ("DELETE", "/v1/r2/buckets/stolen/objects/k"),
    ("GET", "/v1/r2/keys"),
    ("POST", "/v1/r2/keys"),
    ("DELETE", "/v1/r2/keys/stolen"),
    ("POST", "/v1/r2/maintain"),
    ("GET", "/v1/queues"),
    ("POST", "/v1/queues"),
    ("GET", "/v1/queues/stolen"),
    ("DELETE", "/v1/queues/stolen"),
    ("PUT", "/v1/queues/stolen/consumer"),
    ("DELETE", "/v1/queues/stolen/consumer"),
    ("POST", "/v1/queues/stolen/messages"),
    ("GET", "/v1/queues/stolen/messages/peek"),
    ("POST", "/v1/queues/stolen/messages/pull"),
    ("POST", "/v1/queues/stolen/messages/ack"),
    ("GET", "/v1/cron/stolen"),
    ("POST", "/v1/cron/stolen/trigger"),
];

async fn send(http: &reqwest::Client, method: &str, url: &str, host: Option<&str>, token: Option<&str>) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = http.request(method, url).body(r#"{"sql":"DROP TABLE t"}"#);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request").status().as_u16()
}

/// Every route of the control plane's Pages API (scope `pages`).
const PAGES_API_PATHS: &[(&str, &str)] = &[
    ("GET", "/v1/pages/projects"),
    ("POST", "/v1/pages/projects"),
    ("GET", "/v1/pages/projects/stolen"),
    ("DELETE", "/v1/pages/projects/stolen"),
    ("POST", "/v1/pages/projects/stolen/deployments"),
    ("POST", "/v1/pages/projects/stolen/rollback"),
    ("PUT", "/v1/pages/projects/stolen/domains/stolen.example"),
    ("DELETE", "/v1/pages/projects/stolen/domains/stolen.example"),
    ("POST", "/v1/pages/assets/check-missing"),
    ("PUT", "/v1/pages/assets/abababababababababababababababababababababababababababababababab"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_serves_no_management_path_under_any_host() {
    let cluster = super::cluster(1).await;
    let node = &cluster.nodes[0];
    let own = node.http.to_string();
    let hosts = [
        None,
        Some("evil.example"),
        Some(own.as_str()),
        Some("nobody.workers.localhost"),
        Some("nobody.pages.localhost"),
        Some(""),
    ];
    for (method, path) in MANAGEMENT_PATHS {
        for host in hosts {
            // Not even the cluster's admin token opens them on the edge.
            for token in [None, Some(cluster.token())] {
                let status = send(cluster.edge(), method, &format!("{}{path}", node.url()), host, token).await;
                assert_eq!(status, 404, "{method} {path} on the edge, host {host:?}, token {token:?}");
            }
        }
    }
    let status = send(cluster.edge(), "GET", &format!("{}/healthz", node.url()), None, None).await;
    assert_eq!(status, 200, "the edge's /healthz");
    let status = send(cluster.edge(), "GET", &format!("{}/healthz", node.api_url()), None, None).await;
    assert_eq!(status, 200, "the management API's /healthz needs no token");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_tokens_are_scoped_and_revocation_reaches_every_node() {
    let cluster = super::cluster(2).await;
    let anonymous = cluster.edge();
    for (method, path) in MANAGEMENT_PATHS {
        let url = format!("{}{path}", cluster.nodes[0].api_url());
        assert_eq!(send(anonymous, method, &url, None, None).await, 401, "{method} {path} without a token");
        assert_eq!(send(anonymous, method, &url, None, Some("nmb_guess")).await, 401, "{method} {path}, unknown token");
    }

    // A read-only KV token, made with the CLI (its secret printed once).
    let out = cluster.nimbus(&["--json", "tokens", "create", "reader", "--scope", "kv:read"]).await.expect("cli");
    assert!(out.status.success(), "tokens create: {}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    let (id, secret) = (created["id"].as_str().expect("id"), created["token"].as_str().expect("token"));
    assert_eq!(created["scopes"], json!(["kv:read"]));

    cluster.kv_declare(0, "scoped").await.expect("declare with the admin token");
    let (status, _) = cluster.kv_put(0, "scoped", "k", "v").await.expect("put with the admin token");
    assert_eq!(status, 200);
    let key = |i: usize| format!("{}/v1/kv/scoped/values/k", cluster.nodes[i].api_url());
    for i in 0..2 {
        // Pushed by the control plane: every node learns the new token.
        cluster
            .eventually(Duration::from_secs(10), "the reader token reads on every node", || async {
                Ok(send(anonymous, "GET", &key(i), None, Some(secret)).await == 200)
            })
            .await
            .expect("token reaches the node");
        assert_eq!(send(anonymous, "PUT", &key(i), None, Some(secret)).await, 403, "a read token writing");
        let d1 = format!("{}/v1/d1/databases", cluster.nodes[i].api_url());
        assert_eq!(send(anonymous, "GET", &d1, None, Some(secret)).await, 403, "a kv token reading d1");
        let metrics = format!("{}/metrics", cluster.nodes[i].api_url());
        assert_eq!(send(anonymous, "GET", &metrics, None, Some(secret)).await, 403, "a kv token reading metrics");
        let api = cluster.nodes[i].api_url();
        for (method, path) in [
            ("GET", "/v1/r2/keys"),
            ("POST", "/v1/r2/keys"),
            ("GET", "/v1/r2/buckets"),
            ("POST", "/v1/r2/maintain"),
            ("GET", "/v1/queues"),
            ("POST", "/v1/queues/stolen/messages"),
            ("POST", "/v1/queues/stolen/messages/pull"),
            ("POST", "/v1/cron/stolen/trigger"),
        ] {
            assert_eq!(
                send(anonymous, method, &format!("{api}{path}"), None, Some(secret)).await,
                403,
                "a kv token on {method} {path}"
            );
        }
        // The S3 listener serves signed S3 requests only: no management route, not even with the token.
        let s3 = format!("{}/v1/r2/keys", cluster.nodes[i].s3_url());
        assert_eq!(send(anonymous, "GET", &s3, None, Some(secret)).await, 403, "the S3 port is not the management API");
    }
    // The control plane applies the same scopes: no deploys, no token management.
    let deployments = format!("{}/v1/deployments", cluster.api_url());
    assert_eq!(send(anonymous, "GET", &deployments, None, Some(secret)).await, 403);
    let tokens = format!("{}/v1/tokens", cluster.api_url());
    assert_eq!(send(anonymous, "GET", &tokens, None, Some(secret)).await, 403);
    assert_eq!(send(anonymous, "GET", &tokens, None, None).await, 401);
    // Pages: every route of the control plane's Pages API needs the `pages` scope.
    let projects = format!("{}/v1/pages/projects", cluster.api_url());
    let create = |token: String| {
        let projects = projects.clone();
        async move {
            let request = anonymous.post(&projects).bearer_auth(token).json(&json!({ "name": "scoped" }));
            request.send().await.expect("request").status().as_u16()
        }
    };
    for (method, path) in PAGES_API_PATHS {
        let url = format!("{}{path}", cluster.api_url());
        assert_eq!(send(anonymous, method, &url, None, None).await, 401, "{method} {path} without a token");
        assert_eq!(send(anonymous, method, &url, None, Some(secret)).await, 403, "{method} {path} with a kv token");
    }
    let body = json!({ "name": "pages-ci", "scopes": ["pages:edit"] });
    let created = cluster.api_call(reqwest::Method::POST, "/v1/tokens", Some(body)).await.expect("create");
    assert_eq!(created.status, 201, "{:?}", created.body);
    let pages_secret = created.body["token"].as_str().expect("token").to_owned();
    assert_eq!(create(pages_secret.clone()).await, 201);
    // Reading is not editing.
    let body = json!({ "name": "pages-viewer", "scopes": ["pages:read"] });
    let created = cluster.api_call(reqwest::Method::POST, "/v1/tokens", Some(body)).await.expect("create");
    let reader = created.body["token"].as_str().expect("token").to_owned();
    assert_eq!(send(anonymous, "GET", &projects, None, Some(&reader)).await, 200);
    assert_eq!(create(reader).await, 403);
    assert_eq!(send(anonymous, "GET", &deployments, None, Some(&pages_secret)).await, 403, "pages is not workers");

    // The secret is never listed; revoking it reaches every node.
    let out = cluster.nimbus(&["--json", "tokens", "list"]).await.expect("cli");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains(id) && !listed.contains(secret), "{listed}");
    let out = cluster.nimbus(&["tokens", "revoke", id]).await.expect("cli");
    assert!(out.status.success(), "revoke: {}", String::from_utf8_lossy(&out.stderr));
    for i in 0..2 {
        cluster
            .eventually(Duration::from_secs(10), "the revoked token is refused on every node", || async {
                Ok(send(anonymous, "GET", &key(i), None, Some(secret)).await == 401)
            })
            .await
            .expect("revocation reaches the node");
    }
    assert_eq!(send(anonymous, "GET", &deployments, None, Some(secret)).await, 401);
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_the_pushed_tokens_without_the_control_plane() {
    let mut cluster: Cluster = super::cluster(1).await;
    let body = json!({ "name": "ops", "scopes": ["cluster:read"] });
    let created = cluster.api_call(reqwest::Method::POST, "/v1/tokens", Some(body)).await.expect("create");
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = created.body["token"].as_str().expect("token").to_string();
    let status_url = format!("{}/v1/node", cluster.nodes[0].api_url());
    cluster
        .eventually(Duration::from_secs(10), "the node accepts the new token", || async {
            Ok(send(cluster.edge(), "GET", &status_url, None, Some(&secret)).await == 200)
        })
        .await
        .expect("token pushed");
    cluster.kill_control_plane().await.expect("kill control plane");
    cluster.restart_node(0).await.expect("restart");
    let status_url = format!("{}/v1/node", cluster.nodes[0].api_url());
    assert_eq!(send(cluster.edge(), "GET", &status_url, None, Some(&secret)).await, 200, "persisted token set");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_from_outside_the_keyring_is_dropped_and_counted() {
    let mut cluster = super::cluster(2).await;
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    let refused = "nimbus_gossip_refused_datagrams_total";
    assert_eq!(metric(&cluster, 0, refused).await, 0.0, "nothing refused among members");

    // Bytes that are not sealed at all (what a stranger speaking plain foca would send).
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    for _ in 0..5 {
        socket.send_to(b"\x01not sealed, a forged announce", cluster.nodes[0].gossip).await.expect("send");
    }
    cluster
        .eventually(Duration::from_secs(10), "node-1 counts the unsealed datagrams", || async {
            Ok(metric(&cluster, 0, refused).await >= 5.0)
        })
        .await
        .expect("counted");

    // A node with a key of its own joins through the members and is never let in.
    let stranger_key = format!("[\"{}\"]", nimbus_testkit::random_key().expect("key"));
    let stranger = cluster.add_node_with(&[("NIMBUS_GOSSIP__KEYS", &stranger_key)]).await.expect("stranger starts");
    cluster
        .eventually(Duration::from_secs(20), "the members refuse the stranger's announces", || async {
            Ok(metric(&cluster, 0, refused).await + metric(&cluster, 1, refused).await >= 8.0)
        })
        .await
        .expect("announces refused");
    for i in 0..2 {
        let members = cluster.members_seen_by(i).await.expect("members");
        assert!(members.iter().all(|(id, _)| id != "node-3"), "node-{} lists the stranger: {members:?}", i + 1);
    }
    let seen_by_stranger = cluster.members_seen_by(stranger).await.expect("members");
    assert_eq!(seen_by_stranger, vec![("node-3".to_string(), "alive".to_string())], "it learns no one");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_bomb_ends_at_its_budget_while_workers_keep_answering() {
    let mut spec = ClusterSpec::local(1).expect("spec");
    spec.node_env.push(("NIMBUS_D1__MAX_VM_STEPS".into(), "5000000".into()));
    spec.d1_voters = 1;
    let cluster = Cluster::start(spec).await.expect("cluster");
    super::deploy_example(&cluster, "hello", "hello", json!({})).await;
    cluster.d1_create(0, "bombed").await.expect("create");
    let bomb = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";
    let (bombs, hello) = tokio::join!(
        async {
            let mut answers = Vec::new();
            for _ in 0..3 {
                answers.push(cluster.d1_query(0, "bombed", json!({ "sql": bomb })).await.expect("query"));
            }
            answers
        },
        async {
            let mut statuses = Vec::new();
            for _ in 0..20 {
                statuses.push(cluster.get_worker(0, "hello", "/").await.expect("hello").0);
            }
            statuses
        }
    );
    for (status, body) in bombs {
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains("work budget of 5000000"), "{body}");
    }
    assert!(hello.iter().all(|s| *s == 200), "hello kept answering: {hello:?}");
    // The same bomb as a write stops too, and the node keeps its data and serves on.
    let write = json!({ "sql": format!("CREATE TABLE t AS {bomb}") });
    let (status, body) = cluster.d1_query(0, "bombed", write).await.expect("query");
    assert_eq!(status, 400, "{body}");
    let (status, body) = cluster.d1_query(0, "bombed", json!({ "sql": "SELECT 1 AS one" })).await.expect("query");
    assert_eq!(status, 200, "{body}");
    cluster.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_connections_are_closed_while_workers_keep_answering() {
    let mut spec = ClusterSpec::local(1).expect("spec");
    spec.node_env.push(("NIMBUS_HTTP__HEADER_READ_TIMEOUT_MS".into(), "1000".into()));
    spec.d1_voters = 1;
    let cluster = Cluster::start(spec).await.expect("cluster");
    super::deploy_example(&cluster, "hello", "hello", json!({})).await;
    let edge = cluster.nodes[0].http;
    // 500 clients that start a request and never finish its head (slowloris).
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut tcp = tokio::net::TcpStream::connect(edge).await.expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: hello.workers.localhost\r\nX-Slow: ").await.expect("write");
        slow.push(tcp);
    }
    for _ in 0..20 {
        let (status, _) = cluster.get_worker(0, "hello", "/").await.expect("hello");
        assert_eq!(status, 200, "hello answers beside 500 slow clients");
    }
    // Each slow connection is closed by the node (its read sees the end, or a reset).
    let closed = slow.into_iter().map(|mut tcp| async move {
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    });
    let closed = futures::future::join_all(closed).await;
    assert!(
        closed.iter().all(|c| *c),
        "{} of 500 slow connections stayed open",
        closed.iter().filter(|c| !**c).count()
    );
    let (status, _) = cluster.get_worker(0, "hello", "/").await.expect("hello");
    assert_eq!(status, 200);
    cluster.stop().await.expect("stop");
}

/// A client of the cluster plane holding `cert` (from `certs`), trusting the cluster's CA.
fn tls_client(
    cluster: &Cluster,
    holder: &nimbus_testkit::certs::CertFiles,
    server: &str,
) -> tonic::transport::ClientTlsConfig {
    let read = |p: &std::path::Path| std::fs::read(p).expect("pem");
    let cluster_ca = cluster.certs(server).expect("server cert").ca;
    tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(&cluster_ca)))
        .identity(tonic::transport::Identity::from_pem(read(&holder.cert), read(&holder.key)))
        .domain_name(server)
}

async fn peer_client(
    cluster: &Cluster,
    holder: &nimbus_testkit::certs::CertFiles,
    target: usize,
) -> Result<nimbus_proto::peer::kv_peer_client::KvPeerClient<tonic::transport::Channel>, tonic::transport::Error> {
    let node = &cluster.nodes[target];
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", node.rpc))?
        .tls_config(tls_client(cluster, holder, &node.id))?
        .connect()
        .await?;
    Ok(nimbus_proto::peer::kv_peer_client::KvPeerClient::new(channel))
}

fn digests_as(node: &str, from: std::net::SocketAddr) -> tonic::Request<nimbus_proto::peer::KvDigestsRequest> {
    let mut request = tonic::Request::new(nimbus_proto::peer::KvDigestsRequest {});
    request.metadata_mut().insert("x-nimbus-node", node.parse().expect("header"));
    request.metadata_mut().insert("x-nimbus-from", from.to_string().parse().expect("header"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_plane_admits_only_members_as_themselves() {
    let cluster = super::cluster(2).await;
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    let (node_1, node_2) = (&cluster.nodes[0], &cluster.nodes[1]);

    // A member's own certificate, as itself: admitted.
    let member = cluster.certs("node-2").expect("node-2's certificate");
    let mut client = peer_client(&cluster, &member, 0).await.expect("a member connects");
    client.kv_digests(digests_as("node-2", node_2.gossip)).await.expect("node-2 as itself");
    // The same certificate speaking for node-1, or claiming node-1's gossip address: refused.
    let status = client.kv_digests(digests_as("node-1", node_1.gossip)).await.expect_err("posing as node-1");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let status = client.kv_digests(digests_as("node-2", node_1.gossip)).await.expect_err("forged x-nimbus-from");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // A certificate from another CA (even one issued for `node-1`) cannot connect at all.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let names = ["node-1".to_string(), "control-plane".to_string()];
    let stranger = nimbus_testkit::certs::create(elsewhere.path(), &names).expect("stranger's certs");
    let refused = match peer_client(&cluster, &stranger[0].1, 1).await {
        Err(_) => true,
        Ok(mut client) => client.kv_digests(digests_as("node-1", node_1.gossip)).await.is_err(),
    };
    assert!(refused, "a certificate from another CA reaches peer gRPC");
    // Nor can plaintext.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", node_1.rpc)).expect("uri").connect().await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => nimbus_proto::peer::kv_peer_client::KvPeerClient::new(channel)
            .kv_digests(digests_as("node-2", node_2.gossip))
            .await
            .is_err(),
    };
    assert!(refused, "plaintext reaches peer gRPC");

    // The control plane's watch: a stranger cannot watch; a member cannot watch as another.
    let watch = |holder: nimbus_testkit::certs::CertFiles, node: &'static str| {
        let config = tls_client(&cluster, &holder, "control-plane");
        let url = format!("https://{}", cluster.grpc);
        async move {
            let channel = tonic::transport::Endpoint::from_shared(url)?.tls_config(config)?.connect().await?;
            let mut client = nimbus_proto::deploy::deployments_client::DeploymentsClient::new(channel);
            let request = nimbus_proto::deploy::WatchRequest {
                node_id: node.into(),
                from_seq: 0,
                region: "x".into(),
                http_addr: "x".into(),
            };
            let mut stream = client.watch(request).await.map_err(|s| anyhow::anyhow!("{s}"))?.into_inner();
            stream.message().await.map_err(|s| anyhow::anyhow!("{s}"))?;
            Ok::<(), anyhow::Error>(())
        }
    };
    watch(stranger[1].1.clone(), "node-1").await.expect_err("a stranger watches the control plane");
    let posing = watch(member.clone(), "node-1").await.expect_err("node-2 watches as node-1");
    assert!(posing.to_string().contains("not issued for node"), "{posing}");
    watch(member, "node-2").await.expect("node-2 watches as itself");
    cluster.stop().await.expect("stop");
}

/// The first line of the answer to `GET path` over TLS from a client that trusts only `ca`
/// and expects a certificate for `localhost`; `Err` when the handshake fails.
async fn https_get(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    path: &str,
    token: Option<&str>,
) -> Result<String, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls_pki_types::CertificateDer::from_pem_file(ca).expect("the CA certificate");
    roots.add(ca).expect("a root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("a name");
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{auth}connection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer);
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_and_the_control_plane_api_serve_https_when_given_a_certificate() {
    let certs = tempfile::tempdir().expect("tempdir");
    let made = nimbus_testkit::certs::create(certs.path(), &["localhost".to_string()]).expect("a certificate");
    let files = &made[0].1;
    let (cert, key) = (files.cert.display().to_string(), files.key.display().to_string());
    let mut spec = ClusterSpec::local(1).expect("spec");
    spec.node_env =
        vec![("NIMBUS_HTTP__TLS__CERT_FILE".into(), cert.clone()), ("NIMBUS_HTTP__TLS__KEY_FILE".into(), key.clone())];
    spec.control_plane_env =
        vec![("NIMBUS_API__TLS__CERT_FILE".into(), cert), ("NIMBUS_API__TLS__KEY_FILE".into(), key)];
    let cluster = Cluster::start(spec).await.expect("cluster");
    let node = &cluster.nodes[0];

    let edge = https_get(node.http, &files.ca, "/healthz", None).await.expect("the edge speaks TLS");
    assert!(edge.starts_with("HTTP/1.1 200"), "{edge}");
    let stranger = https_get(node.http, &files.ca, "/v1/kv/namespaces", None).await.expect("TLS");
    assert!(stranger.starts_with("HTTP/1.1 404"), "{stranger}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = cluster.edge().get(format!("{}/healthz", node.url())).send().await;
    assert!(plain.is_err(), "plain HTTP was answered on the HTTPS edge: {plain:?}");

    let api = cluster.api;
    let anonymous = https_get(api, &files.ca, "/v1/deployments", None).await.expect("the API speaks TLS");
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    let operator = https_get(api, &files.ca, "/v1/deployments", Some(cluster.token())).await.expect("TLS");
    assert!(operator.starts_with("HTTP/1.1 200"), "{operator}");

    // A client that trusts another CA refuses the server's certificate.
    let other = tempfile::tempdir().expect("tempdir");
    let strange = nimbus_testkit::certs::create(other.path(), &["localhost".to_string()]).expect("another CA");
    assert!(https_get(node.http, &strange[0].1.ca, "/healthz", None).await.is_err());
    cluster.stop().await.expect("stop");
}
