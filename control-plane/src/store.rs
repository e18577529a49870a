//! Every version of every worker, durably, in one SQLite database.
//!
//! Guarantees: a deploy, rollback or delete commits in one transaction together with the
//! event that announces it, so the event sequence is gapless and matches the state; component
//! bytes are stored once per content hash; what was acknowledged survives a restart (WAL,
//! `synchronous = FULL`).
//!
//! Tables: `components` (hash → bytes), `versions` (worker, version → component, manifest),
//! `workers` (name → active version or deleted), `events` (seq → worker, version or NULL for
//! a delete, or [`TOKENS_EVENT`] for a token change), `rollout` (node, worker → last
//! acknowledged version), `nodes` (last watch), `tokens` (management tokens: id, name, scopes
//! and the SHA-256 of the secret; the secret itself is never stored). Pages' tables and blobs
//! are `crate::pages`'s.

use crate::error::ControlPlaneError;
pub use nimbus_api::control::TokenInfo;
pub use nimbus_api::control::{NodeInfo, Rollout, VersionInfo, WorkerSummary};
use nimbus_proto::deploy::{ApiToken, PagesProject, TokenSet, WorkerDeployment};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

pub struct Store {
    /// One connection: SQLite serialises writers anyway, and every call is short.
    conn: Mutex<Connection>,
    /// Pages' content-addressed blobs (`crate::pages`).
    pub(crate) blobs: nimbus_pages::blobs::BlobDir,
}

/// The whole desired state at one sequence number.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub seq: u64,
    pub workers: Vec<WorkerDeployment>,
    pub pages: Vec<PagesProject>,
}

/// A change after some sequence number.
#[derive(Debug, Clone)]
pub enum Change {
    Upsert(WorkerDeployment),
    Removed(String),
    /// The management tokens changed: the whole set as nodes check it.
    Tokens(TokenSet),
    /// A Pages project changed (a deployment, a rollback): the whole project.
    Pages(PagesProject),
    PagesRemoved(String),
}

/// The `events.worker` of a token change; no worker can be named so (`*` is refused).
pub const TOKENS_EVENT: &str = "*tokens";
/// At most this many tokens exist at once (each is checked on every node).
pub const MAX_TOKENS: usize = 1_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS components (
    hash TEXT PRIMARY KEY,
    bytes BLOB NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    worker TEXT NOT NULL,
    version INTEGER NOT NULL,
    component_hash TEXT NOT NULL REFERENCES components(hash),
    manifest TEXT NOT NULL,
    message TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (worker, version)
);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY,
    active_version INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    worker TEXT NOT NULL,
    version INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout (
    node_id TEXT NOT NULL,
    worker TEXT NOT NULL,
    version INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (node_id, worker)
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    http_addr TEXT NOT NULL,
    connected INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
";

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, ControlPlaneError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| ControlPlaneError::Io { context: format!("creating {}", dir.display()), source })?;
        let conn = Connection::open(dir.join("control-plane.sqlite3"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::pages::SCHEMA)?;
        Ok(Store { conn: Mutex::new(conn), blobs: nimbus_pages::blobs::BlobDir::new(dir.join("pages").join("blobs")) })
    }

    pub(crate) fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, ControlPlaneError> {
        self.conn.lock().map_err(|_| ControlPlaneError::Internal("database lock poisoned".into()))
    }

    /// Stores a new version and makes it active. Returns (version, seq).
    pub fn deploy(
        &self,
        worker: &str,
        hash: &str,
        bytes: &[u8],
        manifest_json: &str,
        message: Option<&str>,
    ) -> Result<(u64, u64), ControlPlaneError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let t = now();
        tx.execute(
            "INSERT OR IGNORE INTO components (hash, bytes, size, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash, bytes, bytes.len() as i64, t],
        )?;
        let version: u64 =
            tx.query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE worker = ?1", [worker], |r| {
                r.get(0)
            })?;
        tx.execute(
            "INSERT INTO versions (worker, version, component_hash, manifest, message, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![worker, version, hash, manifest_json, message, t],
        )?;
        let seq = activate(&tx, worker, Some(version), t)?;
        tx.commit()?;
        Ok((version, seq))
    }

    /// Makes an existing version active again. Returns seq.
    pub fn rollback(&self, worker: &str, version: u64) -> Result<u64, ControlPlaneError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let exists: Option<u64> = tx
            .query_row(
                "SELECT version FROM versions WHERE worker = ?1 AND version = ?2",
                params![worker, version],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            return Err(ControlPlaneError::VersionNotFound { worker: worker.into(), version });
        }
        let seq = activate(&tx, worker, Some(version), now())?;
        tx.commit()?;
        Ok(seq)
    }

    /// Stops serving a worker everywhere (its versions stay for a later rollback).
    pub fn delete(&self, worker: &str) -> Result<u64, ControlPlaneError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let active: Option<Option<u64>> =
            tx.query_row("SELECT active_version FROM workers WHERE name = ?1", [worker], |r| r.get(0)).optional()?;
        if !matches!(active, Some(Some(_))) {
            return Err(ControlPlaneError::WorkerNotFound(worker.into()));
        }
        let seq = activate(&tx, worker, None, now())?;
        tx.commit()?;
        Ok(seq)
    }

    pub fn active_version(&self, worker: &str) -> Result<Option<u64>, ControlPlaneError> {
        let conn = self.conn()?;
        Ok(conn
            .query_row("SELECT active_version FROM workers WHERE name = ?1", [worker], |r| r.get::<_, Option<u64>>(0))
            .optional()?
            .flatten())
    }

    pub fn list(&self) -> Result<Vec<WorkerSummary>, ControlPlaneError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT w.name, w.active_version, (SELECT MAX(version) FROM versions v WHERE v.worker = w.name), w.updated_at
             FROM workers w WHERE w.active_version IS NOT NULL ORDER BY w.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(WorkerSummary {
                name: r.get(0)?,
                active_version: r.get(1)?,
                latest_version: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn versions(&self, worker: &str) -> Result<Vec<VersionInfo>, ControlPlaneError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT v.version, v.component_hash, c.size, v.created_at, v.message
             FROM versions v JOIN components c ON c.hash = v.component_hash
             WHERE v.worker = ?1 ORDER BY v.version DESC",
        )?;
        let rows = stmt.query_map([worker], |r| {
            Ok(VersionInfo {
                version: r.get(0)?,
                component_hash: r.get(1)?,
                component_size: r.get(2)?,
                created_at: r.get(3)?,
                message: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn rollout(&self, worker: &str) -> Result<Vec<Rollout>, ControlPlaneError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT node_id, version, ok, error, updated_at FROM rollout WHERE worker = ?1 ORDER BY node_id",
        )?;
        let rows = stmt.query_map([worker], |r| {
            Ok(Rollout {
                node_id: r.get(0)?,
                version: r.get(1)?,
                ok: r.get(2)?,
                error: r.get(3)?,
                updated_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn record_ack(
        &self,
        node_id: &str,
        worker: &str,
        version: u64,
        ok: bool,
        error: Option<&str>,
    ) -> Result<(), ControlPlaneError> {
        self.conn()?.execute(
            "INSERT INTO rollout (node_id, worker, version, ok, error, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (node_id, worker) DO UPDATE SET version = excluded.version, ok = excluded.ok, error = excluded.error, updated_at = excluded.updated_at",
            params![node_id, worker, version, ok, error, now()],
        )?;
        Ok(())
    }

    pub fn record_node(
        &self,
        node_id: &str,
        region: &str,
        http_addr: &str,
        connected: bool,
    ) -> Result<(), ControlPlaneError> {
        self.conn()?.execute(
            "INSERT INTO nodes (node_id, region, http_addr, connected, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (node_id) DO UPDATE SET region = excluded.region, http_addr = excluded.http_addr, connected = excluded.connected, last_seen = excluded.last_seen",
            params![node_id, region, http_addr, connected, now()],
        )?;
        Ok(())
    }

    pub fn nodes(&self) -> Result<Vec<NodeInfo>, ControlPlaneError> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT node_id, region, http_addr, connected, last_seen FROM nodes ORDER BY node_id")?;
        let rows = stmt.query_map([], |r| {
            Ok(NodeInfo {
                node_id: r.get(0)?,
                region: r.get(1)?,
                http_addr: r.get(2)?,
                connected: r.get(3)?,
                last_seen: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, ControlPlaneError> {
        Ok(self.conn()?.query_row("SELECT bytes FROM components WHERE hash = ?1", [hash], |r| r.get(0)).optional()?)
    }

    pub fn current_seq(&self) -> Result<u64, ControlPlaneError> {
        Ok(self.conn()?.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
    }

    /// The whole desired state and the sequence number it reflects.
    pub fn snapshot(&self) -> Result<Snapshot, ControlPlaneError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let seq: u64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let workers = {
            let mut stmt =
                tx.prepare(&format!("{DEPLOYMENT_SELECT} WHERE w.active_version IS NOT NULL ORDER BY w.name"))?;
            let rows = stmt.query_map([], deployment_row)?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let pages = crate::pages::all_projects(&tx)?;
        tx.commit()?;
        Ok(Snapshot { seq, workers, pages })
    }

    /// Each change after `seq`, with its own sequence number, in order.
    pub fn changes_after(&self, seq: u64) -> Result<Vec<(u64, Change)>, ControlPlaneError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT seq, worker, version FROM events WHERE seq > ?1 ORDER BY seq")?;
        let events: Vec<(u64, String, Option<u64>)> =
            stmt.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        let mut changes = Vec::with_capacity(events.len());
        for (seq, worker, version) in events {
            if let Some(project) = worker.strip_prefix(crate::pages::EVENT_PREFIX) {
                // The project as it is now: a later change's state is sent early, never a stale one.
                let change = match crate::pages::project_message(&conn, project)? {
                    Some(message) => Change::Pages(message),
                    None => Change::PagesRemoved(project.to_owned()),
                };
                changes.push((seq, change));
                continue;
            }
            let change = match version {
                None if worker == TOKENS_EVENT => Change::Tokens(token_set(&conn)?),
                None => Change::Removed(worker),
                Some(version) => {
                    let sql = format!("{DEPLOYMENT_SELECT_VERSION} WHERE v.worker = ?1 AND v.version = ?2");
                    Change::Upsert(conn.query_row(&sql, params![worker, version], deployment_row)?)
                }
            };
            changes.push((seq, change));
        }
        Ok(changes)
    }
}

impl Store {
    /// Stores a token (its hash) and announces the new token set; returns the event's seq.
    pub fn create_token(&self, info: &TokenInfo, sha256: &str) -> Result<u64, ControlPlaneError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let count: usize = tx.query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))?;
        if count >= MAX_TOKENS {
            return Err(ControlPlaneError::Invalid(format!(
                "{count} tokens exist, the most there may be; revoke one first"
            )));
        }
        let scopes = serde_json::to_string(&info.scopes).map_err(|e| ControlPlaneError::Internal(e.to_string()))?;
        tx.execute(
            "INSERT INTO tokens (id, name, sha256, scopes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![info.id, info.name, sha256, scopes, info.created_at],
        )?;
        let seq = token_event(&tx)?;
        tx.commit()?;
        Ok(seq)
    }

    /// Deletes a token and announces the new set; `None` when no token has that id.
    pub fn revoke_token(&self, id: &str) -> Result<Option<u64>, ControlPlaneError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        if tx.execute("DELETE FROM tokens WHERE id = ?1", [id])? == 0 {
            return Ok(None);
        }
        let seq = token_event(&tx)?;
        tx.commit()?;
        Ok(Some(seq))
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>, ControlPlaneError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT id, name, scopes, created_at FROM tokens ORDER BY created_at, id")?;
        let rows = stmt.query_map([], |r| {
            let scopes: String = r.get(2)?;
            Ok(TokenInfo {
                id: r.get(0)?,
                name: r.get(1)?,
                scopes: serde_json::from_str(&scopes).unwrap_or_default(),
                created_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The scopes of the token whose secret hashes to `sha256`, if one exists.
    pub fn token_scopes(&self, sha256: &str) -> Result<Option<Vec<String>>, ControlPlaneError> {
        let scopes: Option<String> =
            self.conn()?.query_row("SELECT scopes FROM tokens WHERE sha256 = ?1", [sha256], |r| r.get(0)).optional()?;
        Ok(scopes.map(|s| serde_json::from_str(&s).unwrap_or_default()))
    }

    /// Every token as nodes check it.
    pub fn token_set(&self) -> Result<TokenSet, ControlPlaneError> {
        let conn = self.conn()?;
        token_set(&conn)
    }
}

fn token_event(tx: &rusqlite::Transaction<'_>) -> Result<u64, ControlPlaneError> {
    tx.execute("INSERT INTO events (worker, version, created_at) VALUES (?1, NULL, ?2)", params![TOKENS_EVENT, now()])?;
    Ok(tx.last_insert_rowid() as u64)
}

fn token_set(conn: &Connection) -> Result<TokenSet, ControlPlaneError> {
    let mut stmt = conn.prepare("SELECT id, sha256, scopes FROM tokens ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        let scopes: String = r.get(2)?;
        Ok(ApiToken { id: r.get(0)?, sha256: r.get(1)?, scopes: serde_json::from_str(&scopes).unwrap_or_default() })
    })?;
    Ok(TokenSet { tokens: rows.collect::<Result<_, _>>()? })
}

const DEPLOYMENT_SELECT: &str = "SELECT v.worker, v.version, v.component_hash, c.size, v.manifest
     FROM workers w JOIN versions v ON v.worker = w.name AND v.version = w.active_version
     JOIN components c ON c.hash = v.component_hash";
const DEPLOYMENT_SELECT_VERSION: &str = "SELECT v.worker, v.version, v.component_hash, c.size, v.manifest
     FROM versions v JOIN components c ON c.hash = v.component_hash";

fn deployment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkerDeployment> {
    Ok(WorkerDeployment {
        name: r.get(0)?,
        version: r.get(1)?,
        component_hash: r.get(2)?,
        component_size: r.get(3)?,
        manifest_json: r.get(4)?,
    })
}

/// Points a worker at `version` (None: deleted) and appends the event; returns its seq.
fn activate(
    tx: &rusqlite::Transaction<'_>,
    worker: &str,
    version: Option<u64>,
    t: i64,
) -> Result<u64, ControlPlaneError> {
    tx.execute(
        "INSERT INTO workers (name, active_version, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET active_version = excluded.active_version, updated_at = excluded.updated_at",
        params![worker, version, t],
    )?;
    tx.execute("INSERT INTO events (worker, version, created_at) VALUES (?1, ?2, ?3)", params![worker, version, t])?;
    Ok(tx.last_insert_rowid() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_rollback_delete_produce_ordered_events_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            assert_eq!(store.deploy("hello", "h1", b"one", "{}", None).expect("deploy"), (1, 1));
            assert_eq!(store.deploy("hello", "h2", b"two", "{}", Some("second")).expect("deploy"), (2, 2));
            assert_eq!(store.rollback("hello", 1).expect("rollback"), 3);
            assert!(matches!(store.rollback("hello", 9), Err(ControlPlaneError::VersionNotFound { .. })));
            store.deploy("gone", "h1", b"one", "{}", None).expect("deploy");
            assert_eq!(store.delete("gone").expect("delete"), 5);
            assert!(matches!(store.delete("gone"), Err(ControlPlaneError::WorkerNotFound(_))));
        }
        let store = Store::open(dir.path()).expect("reopen");
        let crate::store::Snapshot { seq, workers, .. } = store.snapshot().expect("snapshot");
        assert_eq!(seq, 5);
        assert_eq!(workers.len(), 1);
        assert_eq!((workers[0].name.as_str(), workers[0].version), ("hello", 1));
        let changes = store.changes_after(2).expect("changes");
        assert_eq!(changes.len(), 3);
        assert!(matches!(&changes[0], (3, Change::Upsert(d)) if d.version == 1));
        assert!(matches!(&changes[2], (5, Change::Removed(name)) if name == "gone"));
        assert_eq!(store.component("h2").expect("component"), Some(b"two".to_vec()));
        assert_eq!(store.versions("hello").expect("versions").len(), 2);
    }
}
