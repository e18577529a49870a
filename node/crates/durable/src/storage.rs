//! A Durable Object's storage on one node, in the `durable` column family.
//!
//! Keys are `object id ‖ 0 ‖ user key`, so one object's keys sort together and in key
//! order; its alarm is `object id ‖ 1` and this node's [`HolderState`] for it (the highest
//! ownership epoch it has promised and the version of its copy) is `object id ‖ 2`. Due
//! alarms are indexed in `meta` under `do-alarm/ ‖ time ‖ id`, so the scheduler reads only
//! what is due. Every call is checked against Cloudflare's limits before anything is
//! written (key ≤ 2 KiB, value ≤ 128 KiB, ≤ 128 keys per call), and every write — a put of
//! many keys, a transaction, `deleteAll`, a replicated batch, a snapshot — is one atomic
//! RocksDB batch together with the holder state it moves to. Writes go to the WAL without
//! waiting for the disk: they survive a crash of the process at once and a crash of the
//! machine after the node's periodic WAL sync (`kv.wal_sync_ms`, shared by the database);
//! an acknowledged write is on three nodes.

use super::wire::{Epoch, Version};
use super::{DurableError, ObjectId};
use nimbus_storage::{Batch, Storage, CF_DURABLE, CF_META};
use serde::{Deserialize, Serialize};

pub const MAX_KEY_BYTES: usize = 2048;
pub const MAX_VALUE_BYTES: usize = 128 * 1024;
pub const MAX_KEYS_PER_CALL: usize = 128;

const DATA: u8 = 0;
const ALARM: u8 = 1;
const STATE: u8 = 2;
const ALARM_INDEX: &[u8] = b"do-alarm/";

/// One write; a call's writes apply together or not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Write {
    Put {
        key: String,
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
    /// Every key and the alarm.
    DeleteAll,
    /// Sets (ms since the epoch) or clears the alarm.
    SetAlarm(Option<i64>),
}

/// Which keys `list` returns: `start ≤ key < end`, with `prefix`, in order (or reversed).
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub start: Option<String>,
    pub end: Option<String>,
    pub prefix: Option<String>,
    pub reverse: bool,
    pub limit: Option<usize>,
}

/// What one node knows about its copy of an object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HolderState {
    /// `<worker>:<class>`, so an alarm can wake the object without a request naming it.
    pub namespace: String,
    /// The highest ownership epoch this node has accepted; older owners are refused.
    pub promised: Epoch,
    /// The version of the data held here.
    pub version: Version,
}

/// An object's whole storage, for a new holder or an owner that is behind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub entries: Vec<(String, Vec<u8>)>,
    pub alarm: Option<i64>,
    pub version: Version,
}

/// A due alarm, as the index holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct DueAlarm {
    pub id: ObjectId,
    pub namespace: String,
    pub at_ms: i64,
}

#[derive(Clone)]
pub struct ObjectStorage {
    storage: Storage,
}

fn data_key(id: &ObjectId, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + key.len());
    out.extend_from_slice(id.as_bytes());
    out.push(DATA);
    out.extend_from_slice(key.as_bytes());
    out
}

fn section(id: &ObjectId, tag: u8) -> Vec<u8> {
    let mut out = id.as_bytes().to_vec();
    out.push(tag);
    out
}

fn alarm_index_key(at_ms: i64, id: &ObjectId) -> Vec<u8> {
    let mut out = ALARM_INDEX.to_vec();
    out.extend_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out
}

fn check_key(key: &str) -> Result<(), DurableError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(DurableError::Invalid(format!("key is {} bytes, over the limit of {MAX_KEY_BYTES}", key.len())));
    }
    Ok(())
}

fn check_count(n: usize) -> Result<(), DurableError> {
    if n > MAX_KEYS_PER_CALL {
        return Err(DurableError::Invalid(format!("{n} keys in one call, over the limit of {MAX_KEYS_PER_CALL}")));
    }
    Ok(())
}

/// Checks every write of a call against the limits; one bad write refuses the lot.
pub fn check_writes(writes: &[Write]) -> Result<(), DurableError> {
    check_count(writes.len())?;
    for write in writes {
        match write {
            Write::Put { key, value } => {
                check_key(key)?;
                if value.len() > MAX_VALUE_BYTES {
                    return Err(DurableError::Invalid(format!(
                        "value of `{key}` is {} bytes, over the limit of {MAX_VALUE_BYTES}",
                        value.len()
                    )));
                }
            }
            Write::Delete { key } => check_key(key)?,
            Write::DeleteAll | Write::SetAlarm(_) => {}
        }
    }
    Ok(())
}

fn decode_state(bytes: &[u8]) -> Result<HolderState, DurableError> {
    postcard::from_bytes(bytes)
        .or_else(|e| legacy_state(bytes).ok_or(e))
        .map_err(|e| DurableError::Internal(format!("corrupt holder state: {e}")))
}

/// A holder state written before versions carried their epoch (`version: (term, seq)`):
/// read as a version of an epoch of that term with no node, which orders below every epoch
/// activated since (they all take a higher term). The bytes of the old form are too short
/// for the new one, so the two cannot be mistaken for each other.
fn legacy_state(bytes: &[u8]) -> Option<HolderState> {
    #[derive(Deserialize)]
    struct Legacy {
        namespace: String,
        promised: Epoch,
        term: u64,
        seq: u64,
    }
    let legacy: Legacy = postcard::from_bytes(bytes).ok()?;
    let epoch = Epoch { term: legacy.term, node: String::new() };
    Some(HolderState {
        namespace: legacy.namespace,
        promised: legacy.promised,
        version: Version { epoch, seq: legacy.seq },
    })
}

fn encode_state(state: &HolderState) -> Result<Vec<u8>, DurableError> {
    postcard::to_allocvec(state).map_err(|e| DurableError::Internal(format!("encoding holder state: {e}")))
}

impl ObjectStorage {
    pub fn new(storage: Storage) -> Self {
        ObjectStorage { storage }
    }

    /// The values of `keys` (up to 128), `None` where absent.
    pub fn get(&self, id: &ObjectId, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, DurableError> {
        check_count(keys.len())?;
        keys.iter()
            .map(|key| {
                check_key(key)?;
                Ok(self.storage.get(CF_DURABLE, &data_key(id, key))?)
            })
            .collect()
    }

    /// Checks and applies the writes atomically with the holder state they lead to (a put of
    /// several keys, a transaction, a replicated batch).
    pub fn apply(&self, id: &ObjectId, writes: &[Write], state: &HolderState) -> Result<(), DurableError> {
        check_writes(writes)?;
        let mut batch = Batch::default();
        // Only a write that touches the alarm needs the old one (to move its index entry).
        let touches_alarm = writes.iter().any(|w| matches!(w, Write::DeleteAll | Write::SetAlarm(_)));
        let old_alarm = if touches_alarm { self.get_alarm(id)? } else { None };
        let mut alarm = old_alarm;
        for write in writes {
            match write {
                Write::Put { key, value } => batch.put(CF_DURABLE, data_key(id, key), value.clone()),
                Write::Delete { key } => batch.delete(CF_DURABLE, data_key(id, key)),
                Write::DeleteAll => {
                    batch.delete_range(CF_DURABLE, section(id, DATA), section(id, ALARM));
                    alarm = None;
                }
                Write::SetAlarm(at) => alarm = *at,
            }
        }
        self.stage_alarm(&mut batch, id, &state.namespace, old_alarm, alarm);
        batch.put(CF_DURABLE, section(id, STATE), encode_state(state)?);
        Ok(self.storage.write_unsynced(batch)?)
    }

    /// Records `state` alone (a promise to a new owner).
    pub fn set_state(&self, id: &ObjectId, state: &HolderState) -> Result<(), DurableError> {
        let mut batch = Batch::default();
        batch.put(CF_DURABLE, section(id, STATE), encode_state(state)?);
        Ok(self.storage.write_unsynced(batch)?)
    }

    pub fn state(&self, id: &ObjectId) -> Result<Option<HolderState>, DurableError> {
        self.storage.get(CF_DURABLE, &section(id, STATE))?.map(|b| decode_state(&b)).transpose()
    }

    /// The object's whole storage and version.
    pub fn snapshot(&self, id: &ObjectId) -> Result<Snapshot, DurableError> {
        let version = self.state(id)?.map(|s| s.version).unwrap_or_default();
        Ok(Snapshot { entries: self.list(id, &ListOptions::default())?, alarm: self.get_alarm(id)?, version })
    }

    /// Replaces the object's storage with `snapshot`, atomically, at `state`.
    pub fn install(&self, id: &ObjectId, snapshot: &Snapshot, state: &HolderState) -> Result<(), DurableError> {
        let old_alarm = self.get_alarm(id)?;
        let mut batch = Batch::default();
        batch.delete_range(CF_DURABLE, section(id, DATA), section(id, ALARM));
        for (key, value) in &snapshot.entries {
            batch.put(CF_DURABLE, data_key(id, key), value.clone());
        }
        self.stage_alarm(&mut batch, id, &state.namespace, old_alarm, snapshot.alarm);
        batch.put(CF_DURABLE, section(id, STATE), encode_state(state)?);
        Ok(self.storage.write_unsynced(batch)?)
    }

    fn stage_alarm(&self, batch: &mut Batch, id: &ObjectId, namespace: &str, old: Option<i64>, new: Option<i64>) {
        if old == new {
            return;
        }
        if let Some(at) = old {
            batch.delete(CF_META, alarm_index_key(at, id));
        }
        match new {
            Some(at) => {
                batch.put(CF_DURABLE, section(id, ALARM), at.to_be_bytes().to_vec());
                batch.put(CF_META, alarm_index_key(at, id), namespace.as_bytes().to_vec());
            }
            None => batch.delete(CF_DURABLE, section(id, ALARM)),
        }
    }

    /// Alarms due at or before `now_ms`, earliest first, at most `limit`.
    pub fn due_alarms(&self, now_ms: i64, limit: usize) -> Result<Vec<DueAlarm>, DurableError> {
        let mut end = ALARM_INDEX.to_vec();
        end.extend_from_slice(&(now_ms.max(0) as u64 + 1).to_be_bytes());
        let rows = self.storage.scan_range(CF_META, ALARM_INDEX, &end)?;
        Ok(rows
            .into_iter()
            .take(limit)
            .filter_map(|(key, namespace)| {
                let rest = key.strip_prefix(ALARM_INDEX)?;
                let at = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
                let id: [u8; 32] = rest.get(8..)?.try_into().ok()?;
                Some(DueAlarm {
                    id: ObjectId::from_bytes(id),
                    namespace: String::from_utf8(namespace).ok()?,
                    at_ms: at as i64,
                })
            })
            .collect())
    }

    /// Drops an index entry whose object no longer has that alarm (this node stopped holding
    /// it, or the owner cleared it while this copy was behind).
    pub fn forget_alarm(&self, due: &DueAlarm) -> Result<(), DurableError> {
        let mut batch = Batch::default();
        batch.delete(CF_META, alarm_index_key(due.at_ms, &due.id));
        Ok(self.storage.write_unsynced(batch)?)
    }

    /// Keys and values in the range, in key order (or reversed), at most `limit`.
    pub fn list(&self, id: &ObjectId, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>, DurableError> {
        let base = section(id, DATA);
        let mut low = base.clone();
        let mut high = section(id, ALARM);
        if let Some(prefix) = &options.prefix {
            check_key(prefix)?;
            low = data_key(id, prefix);
            high = prefix_end(&low);
        }
        if let Some(start) = &options.start {
            check_key(start)?;
            low = low.max(data_key(id, start));
        }
        if let Some(end) = &options.end {
            check_key(end)?;
            high = high.min(data_key(id, end));
        }
        if low >= high {
            return Ok(Vec::new());
        }
        let limit = options.limit.unwrap_or(usize::MAX);
        let rows = if options.reverse {
            self.storage.scan_range_rev(CF_DURABLE, &low, &high, limit)?
        } else {
            let mut rows = self.storage.scan_range(CF_DURABLE, &low, &high)?;
            rows.truncate(limit);
            rows
        };
        Ok(rows
            .into_iter()
            .map(|(key, value)| (String::from_utf8_lossy(&key[base.len()..]).into_owned(), value))
            .collect())
    }

    /// The alarm's time in ms since the epoch, if one is set.
    pub fn get_alarm(&self, id: &ObjectId) -> Result<Option<i64>, DurableError> {
        let raw = self.storage.get(CF_DURABLE, &section(id, ALARM))?;
        Ok(raw.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(i64::from_be_bytes))
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Namespace;

    fn open() -> (tempfile::TempDir, ObjectStorage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("rocksdb");
        (dir, ObjectStorage::new(storage))
    }

    fn put(key: &str, value: &str) -> Write {
        Write::Put { key: key.into(), value: value.as_bytes().to_vec() }
    }

    fn state(seq: u64) -> HolderState {
        let version = Version { epoch: Epoch { term: 1, node: "node-1".into() }, seq };
        HolderState { namespace: "app:Counter".into(), version, ..Default::default() }
    }

    #[test]
    fn objects_keep_their_own_keys_and_list_in_order() {
        let (_dir, store) = open();
        let ns = Namespace::new("app", "Counter");
        let (a, b) = (ns.id_from_name("a"), ns.id_from_name("b"));
        store.apply(&a, &[put("k2", "2"), put("k1", "1"), put("j", "0"), put("k3", "3")], &state(1)).expect("put");
        store.apply(&b, &[put("k1", "other")], &state(1)).expect("put");
        assert_eq!(store.get(&a, &["k1".into(), "nope".into()]).expect("get"), vec![Some(b"1".to_vec()), None]);
        let keys = |rows: Vec<(String, Vec<u8>)>| rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(store.list(&a, &ListOptions::default()).expect("list")), ["j", "k1", "k2", "k3"]);
        let prefix = ListOptions { prefix: Some("k".into()), reverse: true, limit: Some(2), ..Default::default() };
        assert_eq!(keys(store.list(&a, &prefix).expect("list")), ["k3", "k2"]);
        let range = ListOptions { start: Some("k1".into()), end: Some("k3".into()), ..Default::default() };
        assert_eq!(keys(store.list(&a, &range).expect("list")), ["k1", "k2"]);
        store.apply(&a, &[Write::SetAlarm(Some(1_700_000_000_000))], &state(2)).expect("alarm");
        assert_eq!(store.get_alarm(&a).expect("alarm"), Some(1_700_000_000_000));
        let due = store.due_alarms(1_700_000_000_000, 10).expect("due");
        assert_eq!(due, vec![DueAlarm { id: a, namespace: "app:Counter".into(), at_ms: 1_700_000_000_000 }]);
        assert!(store.due_alarms(1_699_999_999_999, 10).expect("due").is_empty(), "not due yet");
        store.apply(&a, &[Write::DeleteAll], &state(3)).expect("delete all");
        assert!(store.list(&a, &ListOptions::default()).expect("list").is_empty());
        assert_eq!(store.get_alarm(&a).expect("alarm"), None);
        assert!(store.due_alarms(i64::MAX, 10).expect("due").is_empty(), "the index follows the alarm");
        assert_eq!(store.get(&b, &["k1".into()]).expect("get"), vec![Some(b"other".to_vec())], "b is untouched");
        assert_eq!(store.state(&a).expect("state"), Some(state(3)));
    }

    #[test]
    fn one_bad_write_refuses_the_whole_call() {
        let (_dir, store) = open();
        let id = Namespace::new("app", "Counter").id_from_name("a");
        let too_big = Write::Put { key: "big".into(), value: vec![0; MAX_VALUE_BYTES + 1] };
        let err = store.apply(&id, &[put("ok", "1"), too_big], &state(1)).expect_err("value too large");
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert_eq!(store.get(&id, &["ok".into()]).expect("get"), vec![None], "nothing was written");
        assert_eq!(store.state(&id).expect("state"), None, "nor the version");
        let keys: Vec<String> = (0..129).map(|i| i.to_string()).collect();
        assert!(store.get(&id, &keys).is_err(), "129 keys in one call");
        assert!(store.apply(&id, &[put(&"k".repeat(MAX_KEY_BYTES + 1), "v")], &state(1)).is_err());
    }

    #[test]
    fn a_holder_state_of_the_old_form_is_still_read() {
        #[derive(Serialize)]
        struct Old {
            namespace: String,
            promised: Epoch,
            version: (u64, u64),
        }
        let promised = Epoch { term: 4, node: "node-2".into() };
        for seq in [0, 1, 300] {
            let old = Old { namespace: "app:Counter".into(), promised: promised.clone(), version: (4, seq) };
            let state = decode_state(&postcard::to_allocvec(&old).expect("encode")).expect("decoded");
            assert_eq!(state.promised, promised);
            assert_eq!(state.version, Version { epoch: Epoch { term: 4, node: String::new() }, seq });
        }
        let new = state(7);
        assert_eq!(decode_state(&encode_state(&new).expect("encode")).expect("decoded"), new);
    }

    #[test]
    fn a_snapshot_replaces_a_copy_whole() {
        let (_dir, store) = open();
        let id = Namespace::new("app", "Counter").id_from_name("a");
        store.apply(&id, &[put("a", "1"), put("b", "2"), Write::SetAlarm(Some(5))], &state(1)).expect("put");
        let snap = store.snapshot(&id).expect("snapshot");
        let (_dir2, other) = open();
        other.apply(&id, &[put("stale", "x"), Write::SetAlarm(Some(9))], &state(7)).expect("put");
        other.install(&id, &snap, &state(1)).expect("install");
        assert_eq!(
            other.list(&id, &ListOptions::default()).expect("list"),
            store.list(&id, &ListOptions::default()).expect("list")
        );
        assert_eq!(other.get_alarm(&id).expect("alarm"), Some(5));
        assert_eq!(other.due_alarms(100, 10).expect("due").len(), 1, "the stale alarm left the index");
    }
}
