//! How an entry is laid out in RocksDB: `namespace \0 key` → a length-prefixed JSON header
//! (version, tombstone, metadata, expiration) followed by the raw value, so a value is never
//! escaped or copied into JSON.

use super::{KvError, Version};
use serde::{Deserialize, Serialize};

/// A stored entry; `value: None` is a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub version: Version,
    pub value: Option<Vec<u8>>,
    pub metadata: Option<String>,
    /// Seconds since the Unix epoch.
    pub expiration: Option<u64>,
}

/// Everything but the value, stored in front of it.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    version: Version,
    tombstone: bool,
    metadata: Option<String>,
    expiration: Option<u64>,
}

impl Entry {
    pub(super) fn encode(&self) -> Vec<u8> {
        let header = Header {
            version: self.version.clone(),
            tombstone: self.value.is_none(),
            metadata: self.metadata.clone(),
            expiration: self.expiration,
        };
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let value = self.value.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(4 + header.len() + value.len());
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(value);
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Entry, KvError> {
        let corrupt = || KvError::Corrupt("entry shorter than its header".into());
        let len = u32::from_be_bytes(bytes.get(..4).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?) as usize;
        let header: Header = serde_json::from_slice(bytes.get(4..4 + len).ok_or_else(corrupt)?)
            .map_err(|e| KvError::Corrupt(e.to_string()))?;
        let value = (!header.tombstone).then(|| bytes[4 + len..].to_vec());
        Ok(Entry { version: header.version, value, metadata: header.metadata, expiration: header.expiration })
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    pub fn expired(&self, now_secs: u64) -> bool {
        self.expiration.is_some_and(|e| e <= now_secs)
    }
}

/// Where an entry lives: `namespace \0 key` (neither may contain NUL).
pub(super) fn storage_key(namespace: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(namespace.len() + 1 + key.len());
    out.extend_from_slice(namespace.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The (namespace, key) of a storage key; `None` when it is not one this module wrote.
pub(super) fn split_storage_key(raw: &[u8]) -> Option<(String, String)> {
    let nul = raw.iter().position(|b| *b == 0)?;
    let namespace = std::str::from_utf8(&raw[..nul]).ok()?;
    let key = std::str::from_utf8(&raw[nul + 1..]).ok()?;
    Some((namespace.to_string(), key.to_string()))
}

impl Version {
    /// Bytes that sort as versions do: the clock big-endian, then the node id.
    pub fn to_order_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.node.len());
        out.extend_from_slice(&self.hlc.to_be_bytes());
        out.extend_from_slice(self.node.as_bytes());
        out
    }

    pub fn from_order_bytes(bytes: &[u8]) -> Option<Version> {
        let hlc = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let node = std::str::from_utf8(&bytes[8..]).ok()?.to_string();
        Some(Version { hlc, node })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_bytes_sort_as_versions_do() {
        let versions = [
            Version { hlc: 1 << 20, node: "b".into() },
            Version { hlc: 1 << 20, node: "ab".into() },
            Version { hlc: (1 << 20) + 1, node: "a".into() },
            Version { hlc: 255, node: "z".into() },
        ];
        for a in &versions {
            assert_eq!(Version::from_order_bytes(&a.to_order_bytes()).as_ref(), Some(a));
            for b in &versions {
                assert_eq!(a.cmp(b), a.to_order_bytes().cmp(&b.to_order_bytes()), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn storage_keys_split_back() {
        assert_eq!(split_storage_key(&storage_key("ns", "a/b\u{e9}")), Some(("ns".into(), "a/b\u{e9}".into())));
        assert_eq!(split_storage_key(b"no-separator"), None);
    }
}
