//! R2: real S3 clients (boto3 and the aws CLI, `testkit/tests/s3/suite.py`) against a
//! three-node cluster, access keys through the CLI, and the repair of a wiped chunk store.

use super::cluster;
use nimbus_api::r2::{AccessKeyCreated, MaintenanceRound, ObjectInfo};
use std::time::Duration;

async fn access_key(cluster: &nimbus_testkit::Cluster, node: usize) -> AccessKeyCreated {
    let url = format!("{}/v1/r2/keys", cluster.nodes[node].api_url());
    let resp = cluster.http().post(url).json(&serde_json::json!({ "name": "tests" })).send().await.expect("create key");
    assert_eq!(resp.status(), 201);
    resp.json().await.expect("key json")
}

/// Every S3 operation R2 serves, through boto3 and the aws CLI, each write through one node
/// and its read through another.
#[tokio::test(flavor = "multi_thread")]
async fn s3_clients_see_r2_behaviour_through_every_node() {
    let cluster = cluster(3).await;
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    let key = access_key(&cluster, 0).await;
    let endpoints: Vec<String> = cluster.nodes.iter().map(|n| n.s3_url()).collect();
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3/suite.py");
    let output = tokio::process::Command::new("python3")
        .arg(suite)
        .env("NIMBUS_S3_ENDPOINTS", endpoints.join(","))
        .env("NIMBUS_S3_KEY_ID", &key.access_key_id)
        .env("NIMBUS_S3_SECRET", &key.secret_access_key)
        .output()
        .await
        .expect("python3 runs (scripts/setup installs boto3 and awscli)");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the S3 suite failed:\n{report}");
    assert!(report.contains("OK"), "{report}");
}

/// Keys made with `nimbus r2 keys create` sign requests at once on any node; deleted, they stop.
#[tokio::test(flavor = "multi_thread")]
async fn access_keys_from_the_cli_sign_and_stop_signing_once_deleted() {
    let cluster = cluster(3).await;
    let created = cluster.nimbus(&["--json", "r2", "keys", "create", "laptop"]).await.expect("cli");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let key: AccessKeyCreated = serde_json::from_slice(&created.stdout).expect("json");
    let listed = cluster.nimbus(&["--json", "r2", "keys", "list"]).await.expect("cli");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains(&key.access_key_id) && !text.contains(&key.secret_access_key),
        "ids listed, never secrets: {text}"
    );
    let check = |expect: &'static str| {
        let endpoint = cluster.nodes[2].s3_url();
        let (id, secret) = (key.access_key_id.clone(), key.secret_access_key.clone());
        async move {
            let script = "import boto3,sys\nfrom botocore.exceptions import ClientError\n\
                s3=boto3.client('s3',endpoint_url=sys.argv[1],aws_access_key_id=sys.argv[2],aws_secret_access_key=sys.argv[3],region_name='auto')\n\
                try:\n  s3.list_buckets(); print('ok')\nexcept ClientError as e: print(e.response['Error']['Code'])";
            let out = tokio::process::Command::new("python3")
                .args(["-c", script, &endpoint, &id, &secret])
                .output()
                .await
                .expect("python3");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expect, "{}", String::from_utf8_lossy(&out.stderr));
        }
    };
    check("ok").await;
    let deleted = cluster.nimbus(&["r2", "keys", "delete", &key.access_key_id]).await.expect("cli");
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    check("InvalidAccessKeyId").await;
}

/// A node whose chunk files are wiped gets every copy it should hold back on its next
/// maintenance round, and serves the objects whole meanwhile (from the other holders).
#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_holder_is_repaired_and_reads_stay_whole() {
    let mut cluster = cluster(3).await;
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    // Management addresses survive a restart; the closures hold copies, not the cluster.
    let apis: Vec<String> = cluster.nodes.iter().map(|n| n.api_url()).collect();
    let api = |i: usize| apis[i].clone();
    let http = cluster.http().clone();
    let created =
        http.post(format!("{}/v1/r2/buckets", api(0))).json(&serde_json::json!({"name": "media"})).send().await;
    assert_eq!(created.expect("create").status(), 201);
    let body: Vec<u8> = (0..10 * 1024 * 1024 + 17).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let put = http.put(format!("{}/v1/r2/buckets/media/objects/video.bin", api(0))).body(body.clone()).send().await;
    let info: ObjectInfo = put.expect("put").json().await.expect("object json");
    assert_eq!(info.chunks, 3);
    // Three members, three copies: every node holds every chunk (the third copy may still be
    // on its way when the PUT answers, which is what a maintenance round settles).
    let round = |i: usize| {
        let url = format!("{}/v1/r2/maintain", api(i));
        let http = http.clone();
        async move { http.post(url).send().await.expect("maintain").json::<MaintenanceRound>().await.expect("round json") }
    };
    for i in 0..3 {
        assert_eq!(round(i).await.chunks_here, 3, "node {i} holds every chunk");
    }

    cluster.kill_node(2).await.expect("kill node-3");
    let chunks = cluster.nodes[2].data_dir.join("r2/chunks");
    std::fs::remove_dir_all(&chunks).expect("wipe node-3's chunks");
    cluster.restart_node(2).await.expect("restart node-3");
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");

    // Reads through the wiped node are whole: it fetches from the other holders.
    let got = http.get(format!("{}/v1/r2/buckets/media/objects/video.bin", api(2))).send().await.expect("get");
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.expect("body") == body, "the object reads back whole through the wiped node");

    let repaired = round(2).await;
    assert_eq!((repaired.repaired, repaired.missing, repaired.chunks_here), (3, 0, 3), "{repaired:?}");
    // Cut off from the others, node-3 holds every chunk but cannot confirm with the Raft
    // leader that its metadata is current: the read fails cleanly rather than risk serving
    // an overwritten or deleted object (R2 is strongly consistent).
    cluster.partition(2, &[0, 1]).await.expect("partition");
    let local = http.get(format!("{}/v1/r2/buckets/media/objects/video.bin", api(2))).send().await;
    assert_eq!(local.expect("get").status(), 503);
    cluster.partition(2, &[]).await.expect("heal");
    let healed = http.get(format!("{}/v1/r2/buckets/media/objects/video.bin", api(2))).send().await.expect("get");
    assert!(healed.bytes().await.expect("body") == body);
}
