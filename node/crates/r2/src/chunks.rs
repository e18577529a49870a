//! Content-addressed chunk files on this node: `<dir>/<first two hex digits>/<id>`, where the
//! id is the SHA-256 of the chunk's bytes.
//!
//! Blocking file I/O throughout: callers run it on the blocking pool.

use super::R2Error;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The SHA-256 of a chunk's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ChunkId([u8; 32]);

impl ChunkId {
    pub fn of(bytes: &[u8]) -> Self {
        ChunkId(Sha256::digest(bytes).into())
    }

    /// An id as it arrives from a peer or a metadata row: exactly 64 lowercase hex digits.
    pub fn parse(text: &str) -> Result<Self, R2Error> {
        let lowercase_hex = text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut id = [0; 32];
        match lowercase_hex && hex::decode_to_slice(text, &mut id).is_ok() {
            true => Ok(ChunkId(id)),
            false => Err(R2Error::InvalidChunkId),
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, R2Error> {
        <[u8; 32]>::try_from(bytes).map(ChunkId).map_err(|_| R2Error::InvalidChunkId)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

/// Copies of every chunk when enough members are live.
pub const COPIES: usize = 3;

/// The members that hold `id`, first choice first (rendezvous hashing of the id, as Durable
/// Objects place objects): fewer than [`COPIES`] only when fewer members are live.
pub fn holders<'a>(id: &ChunkId, members: &[&'a str]) -> Vec<&'a str> {
    nimbus_cluster::placement::rank(id.as_bytes(), members, COPIES)
}

pub struct ChunkStore {
    dir: PathBuf,
}

impl ChunkStore {
    /// Opens (creating) the store in `dir` and removes what a write cut short left behind.
    pub fn open(dir: PathBuf) -> Result<Self, R2Error> {
        std::fs::create_dir_all(&dir).map_err(R2Error::io_at("creating", &dir))?;
        let store = ChunkStore { dir };
        for path in store.files()? {
            if path.extension().is_some_and(|ext| ext.to_string_lossy().starts_with("tmp")) {
                std::fs::remove_file(&path).map_err(R2Error::io_at("removing", &path))?;
            }
        }
        Ok(store)
    }

    /// Every file in every shard directory.
    fn files(&self) -> Result<Vec<PathBuf>, R2Error> {
        let mut files = Vec::new();
        for shard in std::fs::read_dir(&self.dir).map_err(R2Error::io_at("listing", &self.dir))? {
            let shard = shard.map_err(R2Error::io_at("listing", &self.dir))?.path();
            if !shard.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&shard).map_err(R2Error::io_at("listing", &shard))? {
                files.push(entry.map_err(R2Error::io_at("listing", &shard))?.path());
            }
        }
        Ok(files)
    }

    fn path(&self, id: &ChunkId) -> PathBuf {
        let name = id.to_string();
        self.dir.join(&name[..2]).join(name)
    }

    /// Stores `bytes` durably (see the crate's guarantees) and returns their id. A chunk
    /// already here is not written again.
    pub fn put(&self, bytes: &[u8]) -> Result<ChunkId, R2Error> {
        let id = ChunkId::of(bytes);
        self.write(&id, bytes)?;
        Ok(id)
    }

    /// Stores a chunk whose id this node computed from these very bytes (a body it is
    /// cutting into chunks): no second hash.
    pub(crate) fn put_computed(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), R2Error> {
        self.write(id, bytes)
    }

    /// Stores a chunk that arrived as `id` (from a peer), refusing bytes that are not it.
    pub fn put_as(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), R2Error> {
        let actual = ChunkId::of(bytes);
        if actual != *id {
            return Err(R2Error::ChunkCorrupt { id: id.to_string(), actual: actual.to_string() });
        }
        self.write(id, bytes)
    }

    fn write(&self, id: &ChunkId, bytes: &[u8]) -> Result<(), R2Error> {
        let path = self.path(id);
        if path.is_file() {
            // Already here (the same bytes, by their hash): renew its time, so garbage
            // collection gives the write that wants it a full grace period to commit.
            let renewed = File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
            return renewed.map_err(R2Error::io_at("renewing", &path));
        }
        let shard = path.parent().unwrap_or(&self.dir);
        if !shard.is_dir() {
            std::fs::create_dir_all(shard).map_err(R2Error::io_at("creating", shard))?;
            sync_dir(&self.dir)?;
        }
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = path.with_extension(format!("tmp{}", WRITES.fetch_add(1, Ordering::Relaxed)));
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()
        })();
        if let Err(source) = written.and_then(|()| std::fs::rename(&tmp, &path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(R2Error::Io { context: format!("writing chunk {id}"), source });
        }
        sync_dir(shard)
    }

    /// The chunk's bytes, checked against its id.
    pub fn get(&self, id: &ChunkId) -> Result<Vec<u8>, R2Error> {
        let bytes = std::fs::read(self.path(id)).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => R2Error::ChunkMissing(id.to_string()),
            _ => R2Error::Io { context: format!("reading chunk {id}"), source },
        })?;
        let actual = ChunkId::of(&bytes);
        if actual != *id {
            tracing::error!(%id, %actual, "a stored chunk is damaged");
            return Err(R2Error::ChunkCorrupt { id: id.to_string(), actual: actual.to_string() });
        }
        Ok(bytes)
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.path(id).is_file()
    }

    /// When the chunk was written (or last renewed); `None` if it is not here.
    pub fn written_at(&self, id: &ChunkId) -> Option<SystemTime> {
        self.path(id).metadata().and_then(|m| m.modified()).ok()
    }

    /// Removes a chunk; `false` if it was not here.
    pub fn remove(&self, id: &ChunkId) -> Result<bool, R2Error> {
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(R2Error::Io { context: format!("removing chunk {id}"), source }),
        }
    }

    /// Every chunk here with the time it was written (garbage collection and repair walk
    /// this). Files whose names are not chunk ids are skipped.
    pub fn list(&self) -> Result<Vec<(ChunkId, SystemTime)>, R2Error> {
        let mut chunks = Vec::new();
        for path in self.files()? {
            let Some(Ok(id)) = path.file_name().map(|name| ChunkId::parse(&name.to_string_lossy())) else { continue };
            let written = path.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
            chunks.push((id, written));
        }
        chunks.sort_unstable();
        Ok(chunks)
    }
}

fn sync_dir(dir: &Path) -> Result<(), R2Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(R2Error::io_at("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_stored_by_hash_and_read_back_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ChunkStore::open(dir.path().join("chunks")).expect("open");
        let id = store.put(b"hello").expect("put");
        // sha256("hello"), as `sha256sum` prints it.
        assert_eq!(id.to_string(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(store.put(b"hello").expect("again"), id, "the same bytes are the same chunk");
        assert_eq!(store.get(&id).expect("get"), b"hello");
        assert!(store.contains(&id));
        assert_eq!(store.list().expect("list").iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![id]);

        // Damaged on disk: an error, never the damaged bytes.
        std::fs::write(store.path(&id), b"hellO").expect("damage");
        assert!(matches!(store.get(&id), Err(R2Error::ChunkCorrupt { .. })));

        assert!(store.remove(&id).expect("remove"));
        assert!(!store.remove(&id).expect("remove again"));
        assert!(matches!(store.get(&id), Err(R2Error::ChunkMissing(_))));
    }

    #[test]
    fn a_peers_chunk_must_hash_to_its_id_and_ids_must_be_hex() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ChunkStore::open(dir.path().to_owned()).expect("open");
        let claimed = ChunkId::of(b"one thing");
        assert!(matches!(store.put_as(&claimed, b"another"), Err(R2Error::ChunkCorrupt { .. })));
        assert!(!store.contains(&claimed));
        store.put_as(&claimed, b"one thing").expect("the right bytes");
        assert_eq!(store.get(&claimed).expect("get"), b"one thing");

        for bad in ["", "../../etc/passwd", &"A".repeat(64), &"0".repeat(63), &"g".repeat(64), &"0".repeat(65)] {
            assert!(matches!(ChunkId::parse(bad), Err(R2Error::InvalidChunkId)), "{bad:?}");
        }
        assert_eq!(ChunkId::parse(&claimed.to_string()).expect("round trip"), claimed);
        assert!(ChunkId::from_bytes(&[0; 31]).is_err());
    }

    #[test]
    fn a_chunk_has_three_holders_among_the_members() {
        let members = ["node-1", "node-2", "node-3", "node-4", "node-5"];
        let id = ChunkId::of(b"some bytes");
        let holders = holders(&id, &members);
        assert_eq!(holders.len(), COPIES);
        assert_eq!(holders, super::holders(&id, &["node-5", "node-4", "node-3", "node-2", "node-1"]));
        assert_eq!(super::holders(&id, &["node-1", "node-2"]).len(), 2);
    }

    #[test]
    fn opening_removes_what_a_cut_short_write_left() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ChunkStore::open(dir.path().to_owned()).expect("open");
        let id = store.put(b"kept").expect("put");
        let leftover = store.path(&ChunkId::of(b"cut short")).with_extension("tmp7");
        std::fs::create_dir_all(leftover.parent().expect("shard")).expect("shard");
        std::fs::write(&leftover, b"cut").expect("leftover");
        drop(store);
        let store = ChunkStore::open(dir.path().to_owned()).expect("reopen");
        assert!(!leftover.exists());
        assert_eq!(store.get(&id).expect("kept"), b"kept");
        assert_eq!(store.list().expect("list").len(), 1);
    }
}
