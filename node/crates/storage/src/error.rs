use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("column family `{0}` is missing (database created by another version?)")]
    MissingColumnFamily(&'static str),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}
