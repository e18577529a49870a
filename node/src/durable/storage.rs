//! A Durable Object's storage on one node, in the `durable` column family.
//!
//! Keys are `object id ‖ 0 ‖ user key`, so one object's keys sort together and in key
//! order; its alarm is `object id ‖ 1`. Every call is checked against Cloudflare's limits
//! before anything is written (key ≤ 2 KiB, value ≤ 128 KiB, ≤ 128 keys per call), and every
//! write — a put of many keys, a transaction, `deleteAll` — is one atomic RocksDB batch.
//! (Replication to the successors and ownership epochs are the next part.)

use super::{DurableError, ObjectId};
use crate::storage::{Batch, Storage, CF_DURABLE};

pub const MAX_KEY_BYTES: usize = 2048;
pub const MAX_VALUE_BYTES: usize = 128 * 1024;
pub const MAX_KEYS_PER_CALL: usize = 128;

const DATA: u8 = 0;
const ALARM: u8 = 1;

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
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

    /// Applies the writes atomically (a put of several keys, or a transaction), after
    /// checking all of them: one bad write refuses the lot.
    pub fn write(&self, id: &ObjectId, writes: &[Write]) -> Result<(), DurableError> {
        check_count(writes.len())?;
        let mut batch = Batch::default();
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
                    batch.put(CF_DURABLE, data_key(id, key), value.clone());
                }
                Write::Delete { key } => {
                    check_key(key)?;
                    batch.delete(CF_DURABLE, data_key(id, key));
                }
            }
        }
        Ok(self.storage.write(batch)?)
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

    /// Deletes every key and the alarm of the object, atomically.
    pub fn delete_all(&self, id: &ObjectId) -> Result<(), DurableError> {
        let mut batch = Batch::default();
        batch.delete_range(CF_DURABLE, section(id, DATA), section(id, ALARM + 1));
        Ok(self.storage.write(batch)?)
    }

    /// The alarm's time in ms since the epoch, if one is set.
    pub fn get_alarm(&self, id: &ObjectId) -> Result<Option<i64>, DurableError> {
        let raw = self.storage.get(CF_DURABLE, &section(id, ALARM))?;
        Ok(raw.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(i64::from_be_bytes))
    }

    pub fn set_alarm(&self, id: &ObjectId, at_ms: Option<i64>) -> Result<(), DurableError> {
        let mut batch = Batch::default();
        match at_ms {
            Some(at) => batch.put(CF_DURABLE, section(id, ALARM), at.to_be_bytes().to_vec()),
            None => batch.delete(CF_DURABLE, section(id, ALARM)),
        }
        Ok(self.storage.write(batch)?)
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
    use crate::durable::Namespace;

    fn open() -> (tempfile::TempDir, ObjectStorage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("rocksdb");
        (dir, ObjectStorage::new(storage))
    }

    fn put(key: &str, value: &str) -> Write {
        Write::Put { key: key.into(), value: value.as_bytes().to_vec() }
    }

    #[test]
    fn objects_keep_their_own_keys_and_list_in_order() {
        let (_dir, store) = open();
        let ns = Namespace::new("app", "Counter");
        let (a, b) = (ns.id_from_name("a"), ns.id_from_name("b"));
        store.write(&a, &[put("k2", "2"), put("k1", "1"), put("j", "0"), put("k3", "3")]).expect("put");
        store.write(&b, &[put("k1", "other")]).expect("put");
        assert_eq!(store.get(&a, &["k1".into(), "nope".into()]).expect("get"), vec![Some(b"1".to_vec()), None]);
        let keys = |rows: Vec<(String, Vec<u8>)>| rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(store.list(&a, &ListOptions::default()).expect("list")), ["j", "k1", "k2", "k3"]);
        let prefix = ListOptions { prefix: Some("k".into()), reverse: true, limit: Some(2), ..Default::default() };
        assert_eq!(keys(store.list(&a, &prefix).expect("list")), ["k3", "k2"]);
        let range = ListOptions { start: Some("k1".into()), end: Some("k3".into()), ..Default::default() };
        assert_eq!(keys(store.list(&a, &range).expect("list")), ["k1", "k2"]);
        store.set_alarm(&a, Some(1_700_000_000_000)).expect("alarm");
        assert_eq!(store.get_alarm(&a).expect("alarm"), Some(1_700_000_000_000));
        store.delete_all(&a).expect("delete all");
        assert!(store.list(&a, &ListOptions::default()).expect("list").is_empty());
        assert_eq!(store.get_alarm(&a).expect("alarm"), None);
        assert_eq!(store.get(&b, &["k1".into()]).expect("get"), vec![Some(b"other".to_vec())], "b is untouched");
    }

    #[test]
    fn one_bad_write_refuses_the_whole_call() {
        let (_dir, store) = open();
        let id = Namespace::new("app", "Counter").id_from_name("a");
        let too_big = Write::Put { key: "big".into(), value: vec![0; MAX_VALUE_BYTES + 1] };
        let err = store.write(&id, &[put("ok", "1"), too_big]).expect_err("value too large");
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert_eq!(store.get(&id, &["ok".into()]).expect("get"), vec![None], "nothing was written");
        let keys: Vec<String> = (0..129).map(|i| i.to_string()).collect();
        assert!(store.get(&id, &keys).is_err(), "129 keys in one call");
        assert!(store.write(&id, &[put(&"k".repeat(MAX_KEY_BYTES + 1), "v")]).is_err());
    }
}
