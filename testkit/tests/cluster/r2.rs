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

const FAULTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3/faults.py");

/// `faults.py` running beside the test: its output lines, as they come.
struct Faults {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: Vec<String>,
}

impl Faults {
    fn start(key: &AccessKeyCreated, args: &[&str]) -> Faults {
        let mut child = tokio::process::Command::new("python3")
            .arg(FAULTS)
            .args(args)
            .env("NIMBUS_S3_KEY_ID", &key.access_key_id)
            .env("NIMBUS_S3_SECRET", &key.secret_access_key)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().expect("stdout");
        Faults { child, lines: tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout)), seen: Vec::new() }
    }

    /// Reads lines until one starts with `prefix`; that line.
    async fn until(&mut self, prefix: &str) -> String {
        let wait = tokio::time::timeout(Duration::from_secs(300), async {
            while let Some(line) = self.lines.next_line().await.expect("read") {
                self.seen.push(line.clone());
                if line.starts_with(prefix) {
                    return line;
                }
            }
            panic!("faults.py ended before `{prefix}`: {:?}", self.seen);
        });
        wait.await.expect("faults.py went quiet")
    }

    async fn finish(mut self) -> Vec<String> {
        while let Some(line) = self.lines.next_line().await.expect("read") {
            self.seen.push(line);
        }
        assert!(self.child.wait().await.expect("wait").success(), "{:?}", self.seen);
        self.seen
    }
}

async fn bucket(cluster: &nimbus_testkit::Cluster, name: &str) {
    let url = format!("{}/v1/r2/buckets", cluster.nodes[0].api_url());
    let created = cluster.http().post(url).json(&serde_json::json!({ "name": name })).send().await.expect("create");
    assert_eq!(created.status(), 201);
}

/// The Raft leader is SIGKILLed in the middle of a stream of PUTs through another node:
/// every acknowledged PUT reads back with its bytes through every live node, and a PUT that
/// failed left either nothing or its whole object.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_loses_no_acknowledged_put_and_shows_no_half_object() {
    let mut cluster = cluster(3).await;
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    let key = access_key(&cluster, 0).await;
    bucket(&cluster, "faults").await;
    let leader = cluster.d1_leader().await.expect("a leader");
    let through = (leader + 1) % 3;
    let mut puts = Faults::start(&key, &["puts", &cluster.nodes[through].s3_url(), "faults", "60"]);
    for _ in 0..10 {
        puts.until("ACK").await;
    }
    cluster.kill_node(leader).await.expect("kill the leader");
    let log = puts.finish().await;
    let acked = log.iter().filter(|l| l.starts_with("ACK")).count();
    assert!(acked >= 20, "PUTs went on under a new leader: {log:?}");
    cluster.restart_node(leader).await.expect("restart the old leader");
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    let file = cluster.dir().join("puts.log");
    std::fs::write(&file, log.join("\n")).expect("write log");
    let endpoints: Vec<String> = cluster.nodes.iter().map(|n| n.s3_url()).collect();
    let file = file.display().to_string();
    let verify = Faults::start(&key, &["verify", &endpoints.join(","), "faults", &file]).finish().await;
    assert!(verify.iter().any(|l| l.starts_with("OK")), "{verify:?}");
}

/// A chunk holder is SIGKILLed while a multipart upload runs: the upload completes (or fails
/// cleanly), every read after it is whole, and the restarted holder gets its copies back.
#[tokio::test(flavor = "multi_thread")]
async fn a_holder_killed_during_a_multipart_upload_leaves_every_read_whole() {
    let mut cluster = cluster(3).await;
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    let key = access_key(&cluster, 0).await;
    bucket(&cluster, "faults").await;
    // Every node holds every chunk (three copies, three nodes): any node is a holder; kill one
    // that is neither the node taking the upload nor the leader, so the upload keeps going.
    let leader = cluster.d1_leader().await.expect("a leader");
    let victim = (0..3).find(|i| *i != leader && *i != 0).expect("a victim");
    let mut upload = Faults::start(&key, &["multipart", &cluster.nodes[0].s3_url(), "faults", "movie", "6"]);
    upload.until("PART 2").await;
    cluster.kill_node(victim).await.expect("kill a holder");
    let log = upload.finish().await;
    let done = log.iter().find(|l| l.starts_with("DONE") || l.starts_with("FAILED")).expect("an outcome").clone();
    let live: Vec<String> = (0..3).filter(|i| *i != victim).map(|i| cluster.nodes[i].s3_url()).collect();
    let read = |endpoints: Vec<String>| {
        let key = &key;
        async move {
            let script = "import boto3,hashlib,os,sys\nfrom botocore.exceptions import ClientError\n\
                for e in sys.argv[1].split(','):\n\
                \x20 s3=boto3.client('s3',endpoint_url=e,aws_access_key_id=os.environ['NIMBUS_S3_KEY_ID'],aws_secret_access_key=os.environ['NIMBUS_S3_SECRET'],region_name='auto')\n\
                \x20 try: print(hashlib.sha256(s3.get_object(Bucket='faults',Key='movie')['Body'].read()).hexdigest())\n\
                \x20 except ClientError as x: print(x.response['Error']['Code'])";
            let out = tokio::process::Command::new("python3")
                .args(["-c", script, &endpoints.join(",")])
                .env("NIMBUS_S3_KEY_ID", &key.access_key_id)
                .env("NIMBUS_S3_SECRET", &key.secret_access_key)
                .output()
                .await
                .expect("python3");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect::<Vec<_>>()
        }
    };
    let expected = match done.split_once(' ') {
        Some(("DONE", sha)) => sha.to_owned(),
        _ => "NoSuchKey".to_owned(),
    };
    assert_eq!(read(live).await, vec![expected.clone(); 2], "{log:?}");

    cluster.restart_node(victim).await.expect("restart the holder");
    cluster.wait_membership(Duration::from_secs(20)).await.expect("membership");
    let url = format!("{}/v1/r2/maintain", cluster.nodes[victim].api_url());
    let round: MaintenanceRound = cluster.http().post(url).send().await.expect("maintain").json().await.expect("json");
    assert_eq!(round.missing, 0, "{round:?}");
    let all: Vec<String> = cluster.nodes.iter().map(|n| n.s3_url()).collect();
    assert_eq!(read(all).await, vec![expected; 3]);
}
