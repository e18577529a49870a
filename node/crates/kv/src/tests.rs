use super::*;
use nimbus_storage::CF_KV;
use nimbus_util::metrics::Metrics;

fn open(dir: &std::path::Path, node: &str) -> KvStore {
    let storage = Storage::open(dir).expect("open");
    let (kv, _changes) = KvStore::open(storage, node, 60, 500, Arc::new(Metrics::new())).expect("open kv");
    kv
}

fn store(node: &str) -> (tempfile::TempDir, KvStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = open(dir.path(), node);
    kv.declare_namespace("ns", None).expect("declare");
    kv.declare_namespace("other", None).expect("declare");
    (dir, kv)
}

#[test]
fn put_get_delete_round_trip_with_metadata_and_ttl() {
    let (_dir, kv) = store("a");
    let opts = PutOptions { expiration_ttl: Some(120), metadata: Some(r#"{"n":1}"#.into()), ..Default::default() };
    kv.put("ns", "k", b"v1".to_vec(), opts).expect("put");
    let entry = kv.get("ns", "k").expect("get").expect("present");
    assert_eq!(entry.value.as_deref(), Some(&b"v1"[..]));
    assert_eq!(entry.metadata.as_deref(), Some(r#"{"n":1}"#));
    assert!(entry.expiration.expect("expiration") >= now_secs() + 119);
    assert!(kv.get("other", "k").expect("get").is_none(), "namespaces are separate");
    kv.delete("ns", "k").expect("delete");
    assert!(kv.get("ns", "k").expect("get").is_none());
}

#[test]
fn limits_are_refused_and_nothing_is_written() {
    let (_dir, kv) = store("a");
    let long_key = "k".repeat(MAX_KEY_BYTES + 1);
    assert!(matches!(kv.put("ns", &long_key, vec![], PutOptions::default()), Err(KvError::InvalidKey(_))));
    assert!(matches!(kv.put("ns", "", vec![], PutOptions::default()), Err(KvError::InvalidKey(_))));
    assert!(matches!(kv.put("ns", "..", vec![], PutOptions::default()), Err(KvError::InvalidKey(_))));
    let big = vec![0u8; MAX_VALUE_BYTES + 1];
    assert!(matches!(kv.put("ns", "big", big, PutOptions::default()), Err(KvError::ValueTooLarge { .. })));
    let fat = PutOptions { metadata: Some(format!("\"{}\"", "m".repeat(MAX_METADATA_BYTES))), ..Default::default() };
    assert!(matches!(kv.put("ns", "m", vec![], fat), Err(KvError::InvalidMetadata(_))));
    let not_json = PutOptions { metadata: Some("{nope".into()), ..Default::default() };
    assert!(matches!(kv.put("ns", "m", vec![], not_json), Err(KvError::InvalidMetadata(_))));
    let short_ttl = PutOptions { expiration_ttl: Some(10), ..Default::default() };
    assert!(matches!(kv.put("ns", "t", vec![], short_ttl), Err(KvError::InvalidExpiration(_))));
    let past = PutOptions { expiration: Some(1), ..Default::default() };
    assert!(matches!(kv.put("ns", "t", vec![], past), Err(KvError::InvalidExpiration(_))));
    assert!(kv.list("ns", "", 1000, None).expect("list").keys.is_empty(), "nothing was written");
    assert!(kv.put("ns", &"k".repeat(MAX_KEY_BYTES), vec![], PutOptions::default()).is_ok(), "512 bytes is allowed");
}

#[test]
fn replicas_converge_on_the_highest_version_whatever_the_order() {
    let (_da, a) = store("a");
    let (_db, b) = store("b");
    let wa = a.put("ns", "k", b"from-a".to_vec(), PutOptions::default()).expect("put");
    let wb = b.put("ns", "k", b"from-b".to_vec(), PutOptions::default()).expect("put");
    assert!(a.merge("ns", "k", &wb).is_ok());
    assert!(b.merge("ns", "k", &wa).is_ok());
    let winner = a.get("ns", "k").expect("get").expect("present");
    assert_eq!(winner, b.get("ns", "k").expect("get").expect("present"), "same winner on both");
    assert_eq!(winner.version, std::cmp::max(wa.version, wb.version));
}

#[test]
fn a_stale_write_does_not_resurrect_a_deleted_key() {
    let (_da, a) = store("a");
    let (_db, b) = store("b");
    let stale = b.put("ns", "k", b"old".to_vec(), PutOptions::default()).expect("put");
    a.merge("ns", "k", &stale).expect("merge");
    let tombstone = a.delete("ns", "k").expect("delete");
    assert!(!a.merge("ns", "k", &stale).expect("merge"), "older put loses to the tombstone");
    assert!(a.get("ns", "k").expect("get").is_none());
    assert!(b.merge("ns", "k", &tombstone).expect("merge"), "the tombstone wins on the other replica");
    assert!(b.get("ns", "k").expect("get").is_none());
    // A write made after observing the tombstone orders after it.
    b.put("ns", "k", b"new".to_vec(), PutOptions::default()).expect("put");
    assert_eq!(b.get("ns", "k").expect("get").and_then(|e| e.value).as_deref(), Some(&b"new"[..]));
}

#[test]
fn list_pages_through_thousands_of_keys_skipping_tombstones() {
    let (_dir, kv) = store("a");
    for i in 0..2500 {
        kv.put("ns", &format!("user:{i:05}"), vec![1], PutOptions::default()).expect("put");
    }
    for i in (0..2500).step_by(10) {
        kv.delete("ns", &format!("user:{i:05}")).expect("delete");
    }
    kv.put("ns", "other", vec![1], PutOptions::default()).expect("put");
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = kv.list("ns", "user:", 1000, cursor.as_deref()).expect("list");
        pages += 1;
        assert!(page.keys.len() <= 1000);
        seen.extend(page.keys.into_iter().map(|k| k.name));
        if page.list_complete {
            assert!(page.cursor.is_none());
            break;
        }
        cursor = page.cursor;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..2500).filter(|i| i % 10 != 0).map(|i| format!("user:{i:05}")).collect();
    assert_eq!(seen, expected);
    assert!(matches!(kv.list("ns", "", 1001, None), Err(KvError::InvalidLimit(1001))));
    assert!(matches!(kv.list("ns", "", 10, Some("zz")), Err(KvError::InvalidCursor(_))));
}

#[test]
fn expired_entries_are_invisible_at_once_and_purged() {
    let (_dir, kv) = store("a");
    let expired = Entry {
        version: Version { hlc: kv.clock.now(), node: "b".into() },
        value: Some(b"gone".to_vec()),
        metadata: None,
        expiration: Some(now_secs() - 1),
    };
    kv.merge("ns", "old", &expired).expect("merge");
    kv.put("ns", "live", b"here".to_vec(), PutOptions::default()).expect("put");
    kv.delete("ns", "deleted").expect("delete");
    assert!(kv.get("ns", "old").expect("get").is_none());
    let names: Vec<String> = kv.list("ns", "", 10, None).expect("list").keys.into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["live"]);
    assert_eq!(kv.purge(60_000).expect("purge"), 1, "the expired entry; the fresh tombstone stays");
    assert_eq!(kv.purge(0).expect("purge"), 1, "with no grace the tombstone goes too");
    assert!(kv.get("ns", "live").expect("get").is_some());
}

#[test]
fn the_clock_is_monotonic_and_moves_past_what_it_observes() {
    let clock = Hlc::default();
    let a = clock.now();
    let b = clock.now();
    assert!(b > a);
    clock.observe(b + (1_000_000 << hlc::LOGICAL_BITS));
    assert!(clock.now() > b + (1_000_000 << hlc::LOGICAL_BITS));
}

#[test]
fn an_undeclared_or_malformed_namespace_is_refused_and_nothing_is_written() {
    let (_dir, kv) = store("a");
    assert!(matches!(kv.get("nope", "k"), Err(KvError::UnknownNamespace(_))));
    assert!(matches!(kv.put("nope", "k", vec![1], PutOptions::default()), Err(KvError::UnknownNamespace(_))));
    assert!(matches!(kv.list("nope", "", 10, None), Err(KvError::UnknownNamespace(_))));
    for bad in ["", "__namespaces", "has space", "namespaces", &"n".repeat(65)] {
        assert!(matches!(kv.declare_namespace(bad, None), Err(KvError::InvalidNamespace(_))), "{bad:?}");
    }
    assert!(!kv.declare_namespace("ns", None).expect("declare"), "declaring twice is a no-op");
    let ids: Vec<String> = kv.namespaces().expect("namespaces").into_iter().map(|n| n.id).collect();
    assert_eq!(ids, ["ns", "other"]);
}

#[test]
fn digests_match_once_replicas_hold_the_same_entries_and_survive_reopen() {
    let dir_a = tempfile::tempdir().expect("tempdir");
    let a = open(dir_a.path(), "a");
    let (_db, b) = store("b");
    // `a` learns the namespace declarations the way a peer would: by merging b's entries.
    for (namespace, key, entry) in b.snapshot_page(None, usize::MAX).expect("snapshot") {
        a.merge(&namespace, &key, &entry).expect("merge");
    }
    let wa = a.put("ns", "x", b"1".to_vec(), PutOptions::default()).expect("put");
    let wb = b.put("ns", "y", b"2".to_vec(), PutOptions::default()).expect("put");
    b.delete("ns", "y").expect("delete");
    assert_ne!(a.digests().root(), b.digests().root());
    let diff = digest::differing(&a.digests().snapshot(), &b.digests().snapshot());
    assert!(!diff.is_empty() && diff.len() <= 2, "{diff:?}");
    let versions: Vec<Version> = b.versions_in(&diff).expect("versions").into_iter().map(|(_, v)| v).collect();
    assert!(
        versions.iter().all(|v| v.node == "b") && !versions.contains(&wb.version),
        "the tombstone replaced the put"
    );

    for (namespace, key, entry) in b.snapshot_page(None, usize::MAX).expect("snapshot") {
        a.merge(&namespace, &key, &entry).expect("merge");
    }
    b.merge("ns", "x", &wa).expect("merge");
    assert_eq!(a.digests().root(), b.digests().root());
    assert_eq!(a.digests().entries(), 4, "two declarations, a value, a tombstone");

    let root = a.digests().root();
    drop(a);
    let reopened = open(dir_a.path(), "a");
    assert_eq!(reopened.digests().root(), root, "rebuilt from the index");
    assert_eq!(reopened.digests().entries(), 4);
}

#[test]
fn purging_keeps_the_digest_in_step_with_what_is_stored() {
    let (_dir, kv) = store("a");
    kv.put("ns", "k", b"v".to_vec(), PutOptions::default()).expect("put");
    let before = kv.digests().root();
    kv.delete("ns", "k").expect("delete");
    assert_eq!(kv.purge(0).expect("purge"), 1);
    assert_eq!(kv.digests().entries(), 2, "only the declarations remain");
    assert_ne!(kv.digests().root(), before);
    assert!(kv.storage.get(CF_KV, &entry::storage_key("ns", "k")).expect("get").is_none());
}

/// A peer's entry stamped far in the future is refused and changes nothing (it would win
/// every later write and drag the clock along); so is one over a local write's limits.
#[test]
fn merges_refuse_far_future_clocks_and_oversized_entries() {
    let (_dir_a, a) = store("a");
    a.put("ns", "k", b"local".to_vec(), PutOptions::default()).expect("put");
    let future_ms = super::hlc::wall_ms() + 60_000;
    let forged = Entry {
        version: Version { hlc: future_ms << super::hlc::LOGICAL_BITS, node: "mallory".into() },
        value: Some(b"forged".to_vec()),
        metadata: None,
        expiration: None,
    };
    let refused = a.merge("ns", "k", &forged).expect_err("far-future entry");
    assert!(matches!(refused, KvError::ClockSkew { .. }), "{refused}");
    assert_eq!(a.get("ns", "k").expect("get").and_then(|e| e.value), Some(b"local".to_vec()));
    let next = a.put("ns", "k2", b"x".to_vec(), PutOptions::default()).expect("put");
    assert!(next.version.hlc >> super::hlc::LOGICAL_BITS < future_ms, "the clock did not follow the forgery");

    let slightly_ahead = Entry {
        version: Version { hlc: (super::hlc::wall_ms() + 100) << super::hlc::LOGICAL_BITS, node: "b".into() },
        ..forged.clone()
    };
    assert!(a.merge("ns", "k", &slightly_ahead).expect("within the offset"), "a small skew is normal");

    let now = super::hlc::wall_ms() << super::hlc::LOGICAL_BITS;
    let huge = Entry {
        version: Version { hlc: now, node: "b".into() },
        value: Some(vec![0; MAX_VALUE_BYTES + 1]),
        metadata: None,
        expiration: None,
    };
    assert!(matches!(a.merge("ns", "big", &huge), Err(KvError::ValueTooLarge { .. })));
    let meta = Entry { value: Some(b"v".to_vec()), metadata: Some("x".repeat(MAX_METADATA_BYTES + 1)), ..huge.clone() };
    assert!(matches!(a.merge("ns", "meta", &meta), Err(KvError::InvalidMetadata(_))));
    let nameless =
        Entry { version: Version { hlc: now, node: String::new() }, value: Some(b"v".to_vec()), ..meta.clone() };
    assert!(a.merge("ns", "nameless", &nameless).is_err());
    assert!(a.merge("../ns", "k", &slightly_ahead).is_err(), "namespace ids are checked");
}

#[test]
fn anti_entropy_requests_are_deduplicated_and_capped() {
    use crate::replication::{bucket_versions, fetch_keys, BUCKETS_PER_REQUEST, KEYS_PER_FETCH};
    use nimbus_proto::peer::KeyVersion;
    let (_dir, kv) = store("a");
    kv.put("ns", "k", b"v".to_vec(), PutOptions::default()).expect("put");
    let bucket = u32::from(crate::digest::bucket_of(&crate::entry::storage_key("ns", "k")));

    // The same bucket asked for many times is one bucket, answered once.
    let versions = bucket_versions(&kv, &vec![bucket; 10_000]).expect("duplicates are one bucket");
    assert_eq!(versions.len(), 1);
    let too_many: Vec<u32> = (0..=BUCKETS_PER_REQUEST as u32).collect();
    assert!(matches!(bucket_versions(&kv, &too_many), Err(KvError::AntiEntropy(_))));

    let key = |k: &str| KeyVersion { namespace: "ns".into(), key: k.into(), hlc: 1, node: "b".into() };
    assert_eq!(fetch_keys(&vec![key("k"); 10_000]).expect("duplicates are one key").len(), 1);
    let many: Vec<KeyVersion> = (0..=KEYS_PER_FETCH).map(|i| key(&format!("k{i}"))).collect();
    let refused = fetch_keys(&many).expect_err("over the cap");
    assert!(refused.is_client_error(), "{refused}");
}
