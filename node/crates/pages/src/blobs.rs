//! The content-addressed directory both the control plane and every node keep Pages' blobs
//! in (manifests and files): `<dir>/<hash[..2]>/<hash>`, named by the SHA-256 of the bytes.
//!
//! Guarantees: a name on disk always holds exactly the bytes it names (checked on the way in,
//! written to a temporary file, fsynced, renamed); a name is made only from a checked hash;
//! [`BlobDir::sweep`] deletes only blobs it is told nothing references, and only once they
//! are older than a grace period (an upload writes its files before the manifest that
//! references them).

use super::site::is_hash;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What went wrong storing or reading a blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{0:?} is not a SHA-256 in lowercase hex")]
    NotAHash(String),
    #[error("the bytes hash to {actual}, not {named}")]
    Mismatch { named: String, actual: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

/// One content-addressed blob directory.
#[derive(Debug, Clone)]
pub struct BlobDir {
    dir: PathBuf,
}

impl BlobDir {
    pub fn new(dir: PathBuf) -> BlobDir {
        BlobDir { dir }
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(hash)
    }

    /// Whether blob `hash` is here.
    pub fn has(&self, hash: &str) -> bool {
        is_hash(hash) && self.path(hash).is_file()
    }

    /// Where blob `hash` is, for reading it as a file; `None` for a name that is not a hash.
    pub fn file(&self, hash: &str) -> Option<PathBuf> {
        is_hash(hash).then(|| self.path(hash))
    }

    /// Stores `bytes` as blob `hash`, refusing bytes of another hash.
    pub fn put(&self, hash: &str, bytes: &[u8]) -> Result<(), BlobError> {
        if !is_hash(hash) {
            return Err(BlobError::NotAHash(hash.to_owned()));
        }
        let actual = hex::encode(Sha256::digest(bytes));
        if actual != hash {
            return Err(BlobError::Mismatch { named: hash.to_owned(), actual });
        }
        let path = self.path(hash);
        if path.is_file() {
            return Ok(());
        }
        let io = |context: &str| {
            let context = format!("{context} {}", path.display());
            move |source| BlobError::Io { context, source }
        };
        let dir = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io("a temporary file for"))?;
        temp.write_all(bytes).map_err(io("writing"))?;
        temp.as_file().sync_all().map_err(io("syncing"))?;
        temp.persist(&path)
            .map_err(|e| BlobError::Io { context: format!("storing {}", path.display()), source: e.error })?;
        Ok(())
    }

    /// Blob `hash`, if it is here.
    pub fn get(&self, hash: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let Some(path) = self.file(hash) else { return Ok(None) };
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BlobError::Io { context: format!("reading {}", path.display()), source }),
        }
    }

    /// Deletes the blobs not in `referenced` last written more than `grace` ago; how many
    /// went. Files that are not blobs (temporary files) are left alone.
    pub fn sweep(&self, referenced: &HashSet<String>, grace: Duration) -> usize {
        let mut removed = 0;
        let Ok(shards) = std::fs::read_dir(&self.dir) else { return 0 };
        for shard in shards.flatten() {
            let Ok(files) = std::fs::read_dir(shard.path()) else { continue };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if !is_hash(&name) || referenced.contains(&name) {
                    continue;
                }
                let age = file.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                if age.is_some_and(|age| age >= grace) && std::fs::remove_file(file.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_checked_in_and_swept_only_when_unreferenced_and_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobDir::new(dir.path().join("blobs"));
        let hash = |b: &[u8]| hex::encode(Sha256::digest(b));
        assert!(matches!(blobs.put("../x", b"a"), Err(BlobError::NotAHash(_))));
        assert!(matches!(blobs.put(&hash(b"a"), b"b"), Err(BlobError::Mismatch { .. })));
        blobs.put(&hash(b"kept"), b"kept").expect("stores");
        blobs.put(&hash(b"gone"), b"gone").expect("stores");
        assert_eq!(blobs.get(&hash(b"kept")).expect("reads").as_deref(), Some(&b"kept"[..]));
        let referenced = HashSet::from([hash(b"kept")]);
        assert_eq!(blobs.sweep(&referenced, Duration::from_secs(3600)), 0, "too young to go");
        assert_eq!(blobs.sweep(&referenced, Duration::ZERO), 1);
        assert!(blobs.has(&hash(b"kept")) && !blobs.has(&hash(b"gone")));
    }
}
