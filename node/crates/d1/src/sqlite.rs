//! One D1 database: a SQLite file with one writer connection, owned by the state machine, and
//! a pool of read-only connections for local reads.
//!
//! Guarantees that every replica applying the same requests in the same order ends with the
//! same rows, also for SQL that SQLite would answer differently on each replica:
//! - `random()` and `randomblob()` draw from a generator seeded by the log index and the
//!   request's place in the entry;
//! - `'now'` (in `datetime('now')`, `date()`, `CURRENT_TIMESTAMP` …) is the leader's clock at
//!   proposal, carried in the request;
//! - `last_insert_rowid()` and `changes()` are reset to fixed values before every request,
//!   so they never depend on what the connection ran before (a restarted replica's
//!   connection is new); `total_changes()` is refused, since it counts per connection.
//!
//! Every statement runs under a [`Budget`]: SQLite's progress handler counts virtual-machine
//! steps (the same count on every replica for the same statement and data) and stops the
//! statement past `max_vm_steps`; a row over `max_row_bytes` or an answer over
//! `max_result_bytes` ends it too. A write's budget is the leader's, carried in the log entry,
//! so a write that runs out fails the same way on every replica.
//!
//! A request runs inside a savepoint: an error in any statement rolls back all of it. The
//! entry's requests share one transaction, which also records the entry's index
//! (`_nimbus_state`) and each request's outcome (`_nimbus_requests`, so a retried request is
//! answered, not applied twice). User SQL may not open transactions, attach files, touch those
//! two tables or change durability pragmas: an authorizer refuses it at prepare time.

use super::types::{Outcome, QueryResult, Statement, StatementFailure, Value, WriteKind, WriteRequest};
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// D1's limits: a statement's SQL text, its bound parameters, the statements of one batch.
pub const MAX_STATEMENT_BYTES: usize = 100_000;
pub const MAX_PARAMS: usize = 100;
pub const MAX_BATCH_STATEMENTS: usize = 1_000;
/// Outcomes larger than this are recorded for retries without their rows.
const MAX_RECORDED_OUTCOME: usize = 64 * 1024;
/// Request records older than this many log entries are pruned (every 1024th entry).
const REQUEST_MEMORY: u64 = 100_000;
/// Read connections kept open per database.
const MAX_IDLE_READERS: usize = 8;
/// D1's limit on one string or BLOB value.
pub const MAX_VALUE_BYTES: i32 = 2_000_000;
/// The progress handler runs every this many VM steps.
const STEP_CHUNK: u64 = 1_000;

/// The work one statement may do and how large its answer may be (D1's own limits: a row of
/// at most 2 MB; Cloudflare stops a query after 30 s, Nimbus after a count of VM steps,
/// which unlike a clock is the same on every replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Budget {
    pub max_vm_steps: u64,
    pub max_row_bytes: u64,
    pub max_result_bytes: u64,
}

impl Default for Budget {
    /// What entries written before budgets were carried in the log are applied with.
    fn default() -> Self {
        Budget { max_vm_steps: 500_000_000, max_row_bytes: 2_000_000, max_result_bytes: 32 * 1024 * 1024 }
    }
}

/// Counts one connection's VM steps (in chunks) against the running statement's budget.
#[derive(Default)]
struct Meter {
    chunks: AtomicU64,
    limit: AtomicU64,
}

impl Meter {
    /// Installs the progress handler on `conn`.
    fn install(conn: &Connection) -> Arc<Meter> {
        let meter = Arc::new(Meter { chunks: AtomicU64::new(0), limit: AtomicU64::new(u64::MAX) });
        let counting = meter.clone();
        conn.progress_handler(STEP_CHUNK as std::os::raw::c_int, Some(move || counting.step()));
        meter
    }

    /// Starts counting a statement against `max_vm_steps`.
    fn start(&self, max_vm_steps: u64) {
        self.chunks.store(0, Ordering::Relaxed);
        self.limit.store(max_vm_steps.div_ceil(STEP_CHUNK).max(1), Ordering::Relaxed);
    }

    /// Stops metering (the state machine's own statements).
    fn stop(&self) {
        self.limit.store(u64::MAX, Ordering::Relaxed);
    }

    /// True interrupts the statement.
    fn step(&self) -> bool {
        self.chunks.fetch_add(1, Ordering::Relaxed) + 1 > self.limit.load(Ordering::Relaxed)
    }

    fn exhausted(&self) -> bool {
        self.chunks.load(Ordering::Relaxed) > self.limit.load(Ordering::Relaxed)
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS _nimbus_state (id INTEGER PRIMARY KEY CHECK (id = 0), applied_index INTEGER NOT NULL);
    INSERT OR IGNORE INTO _nimbus_state (id, applied_index) VALUES (0, 0);
    CREATE TABLE IF NOT EXISTS _nimbus_requests (
        id BLOB PRIMARY KEY, applied_index INTEGER NOT NULL, outcome BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS _nimbus_requests_by_index ON _nimbus_requests (applied_index);
";

/// Pragmas user SQL may run (reads of the schema and per-connection switches D1 allows too).
const ALLOWED_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "foreign_keys",
    "defer_foreign_keys",
    "quick_check",
    "integrity_check",
];

/// What `'now'` and the random generator are while one request is applied.
#[derive(Default)]
struct Determinism {
    /// The request's time as a Julian day number (f64 bits).
    julian_day: AtomicU64,
    rng: AtomicU64,
}

impl Determinism {
    fn set(&self, time_ms: i64, seed: u64) {
        let julian = 2_440_587.5 + time_ms as f64 / 86_400_000.0;
        self.julian_day.store(julian.to_bits(), Ordering::Relaxed);
        self.rng.store(seed, Ordering::Relaxed);
    }

    fn now(&self) -> f64 {
        f64::from_bits(self.julian_day.load(Ordering::Relaxed))
    }

    /// splitmix64: small, fast, and the same on every replica.
    fn next_u64(&self) -> u64 {
        let mut z = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// How one pass over an entry's requests ended.
enum Applied {
    Done(Vec<Outcome>),
    /// The request at `position` ended the whole transaction (SQLite rolls it back when a
    /// write is interrupted); it fails with `failure` and the entry is applied again.
    RolledBack {
        position: usize,
        failure: StatementFailure,
    },
}

struct Writer {
    conn: Connection,
    meter: Arc<Meter>,
    determinism: Arc<Determinism>,
    /// Set while the state machine runs its own statements, which the authorizer lets through.
    trusted: Arc<AtomicBool>,
}

pub struct Database {
    pub name: String,
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<(Connection, Arc<Meter>)>>,
}

/// Where a database's file lives: `<dir>/<name>.<generation>.sqlite`; a snapshot install
/// writes a new generation, so connections to the old file never touch the new one.
/// `None` for a name D1 does not allow: only a valid name (lowercase letters, digits, `_`,
/// `-`) becomes a file name, so no name reaches outside `dir`.
pub fn file_path(dir: &Path, name: &str, generation: u64) -> Option<PathBuf> {
    crate::validate_name(name).ok()?;
    Some(dir.join(format!("{name}.{generation}.sqlite")))
}

/// Parses a file name written by [`file_path`].
pub fn parse_file_name(file_name: &str) -> Option<(String, u64)> {
    let stem = file_name.strip_suffix(".sqlite")?;
    let (name, generation) = stem.rsplit_once('.')?;
    crate::validate_name(name).ok()?;
    Some((name.to_owned(), generation.parse().ok()?))
}

/// Removes a database file and its WAL and shared-memory files.
pub fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(file));
    }
}

fn failure(index: usize, error: impl std::fmt::Display) -> StatementFailure {
    StatementFailure { index, message: error.to_string() }
}

impl Database {
    /// Opens (creating if absent) the database file at `path`.
    pub fn open(name: &str, path: PathBuf) -> rusqlite::Result<Self> {
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // The Raft log is the durable record; a machine crash loses at most what the log replays.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.set_prepared_statement_cache_capacity(256);
        // D1's limit on a string, BLOB or row: SQLite refuses a longer value itself, the
        // same way on every replica.
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch("CREATE TEMP TABLE IF NOT EXISTS _nimbus_reset (x)")?;
        let determinism = Arc::new(Determinism::default());
        let trusted = Arc::new(AtomicBool::new(false));
        install_deterministic_functions(&conn, &determinism)?;
        let gate = trusted.clone();
        conn.authorizer(Some(
            move |context: AuthContext<'_>| {
                if gate.load(Ordering::Relaxed) {
                    Authorization::Allow
                } else {
                    authorize(&context)
                }
            },
        ));
        let meter = Meter::install(&conn);
        let writer = Writer { conn, meter, determinism, trusted };
        Ok(Database { name: name.to_owned(), path, writer: Mutex::new(writer), readers: Mutex::default() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The index of the last log entry that wrote to this database.
    pub fn applied_index(&self) -> rusqlite::Result<u64> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer
            .conn
            .query_row("SELECT applied_index FROM _nimbus_state", [], |row| row.get::<_, i64>(0))
            .map(|i| i as u64)
    }

    /// Applies the writes of log entry `index` in one transaction. `Err` only for failures of
    /// SQLite itself (I/O, corruption); a request's SQL errors are its [`Outcome::Failed`].
    pub fn apply(
        &self,
        index: u64,
        requests: &[(usize, &WriteRequest)],
        budget: Budget,
    ) -> rusqlite::Result<Vec<Outcome>> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let conn = &writer.conn;
        writer.trusted.store(true, Ordering::Relaxed);
        let applied: i64 = conn.query_row("SELECT applied_index FROM _nimbus_state", [], |row| row.get(0))?;
        if applied as u64 >= index {
            // Replayed after a restart: this entry is already in the file.
            let outcomes = requests.iter().map(|(_, r)| {
                recorded(conn, r.id).ok().flatten().unwrap_or_else(|| {
                    Outcome::Failed(failure(0, "already applied before a restart; the outcome was not recorded"))
                })
            });
            return Ok(outcomes.collect());
        }
        // A statement stopped by its budget inside a transaction makes SQLite roll back the
        // whole transaction, not only the request's savepoint: the entry is then applied again
        // from the start with that request failed up front. Every replica stops the same
        // statement at the same step, so every replica takes the same path.
        let mut doomed: Vec<(usize, StatementFailure)> = Vec::new();
        loop {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let result = self.apply_in_transaction(&writer, index, requests, budget, &doomed);
            writer.trusted.store(true, Ordering::Relaxed);
            match result {
                Ok(Applied::Done(outcomes)) => {
                    conn.execute_batch("COMMIT")?;
                    writer.trusted.store(false, Ordering::Relaxed);
                    return Ok(outcomes);
                }
                Ok(Applied::RolledBack { position, failure }) if doomed.len() < requests.len() => {
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    doomed.push((position, failure));
                }
                Ok(Applied::RolledBack { failure, .. }) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    writer.trusted.store(false, Ordering::Relaxed);
                    let code = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL);
                    return Err(rusqlite::Error::SqliteFailure(code, Some(failure.message)));
                }
                Err(e) => {
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    writer.trusted.store(false, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }

    fn apply_in_transaction(
        &self,
        writer: &Writer,
        index: u64,
        requests: &[(usize, &WriteRequest)],
        budget: Budget,
        doomed: &[(usize, StatementFailure)],
    ) -> rusqlite::Result<Applied> {
        let conn = &writer.conn;
        let mut outcomes = Vec::with_capacity(requests.len());
        for (position, (ordinal, request)) in requests.iter().enumerate() {
            writer.trusted.store(true, Ordering::Relaxed);
            if let Some(outcome) = recorded(conn, request.id)? {
                outcomes.push(outcome);
                continue;
            }
            if let Some((_, failure)) = doomed.iter().find(|(p, _)| *p == position) {
                let outcome = Outcome::Failed(failure.clone());
                record(conn, request.id, index, &outcome)?;
                outcomes.push(outcome);
                continue;
            }
            writer.determinism.set(request.time_ms, index.rotate_left(20) ^ *ordinal as u64);
            conn.prepare_cached("INSERT INTO temp._nimbus_reset (rowid, x) VALUES (0, 0)")?.execute([])?;
            conn.prepare_cached("DELETE FROM temp._nimbus_reset")?.execute([])?;
            conn.execute_batch("SAVEPOINT request")?;
            writer.trusted.store(false, Ordering::Relaxed);
            let outcome = run_request(conn, &writer.meter, budget, &request.kind);
            writer.meter.stop();
            writer.trusted.store(true, Ordering::Relaxed);
            if conn.is_autocommit() {
                let failure = match outcome {
                    Outcome::Failed(failure) => failure,
                    _ => failure(0, "the request ended the transaction"),
                };
                return Ok(Applied::RolledBack { position, failure });
            }
            if matches!(outcome, Outcome::Failed(_)) {
                conn.execute_batch("ROLLBACK TO request")?;
            }
            conn.execute_batch("RELEASE request")?;
            record(conn, request.id, index, &outcome)?;
            outcomes.push(outcome);
        }
        conn.prepare_cached("UPDATE _nimbus_state SET applied_index = ?1")?.execute([index as i64])?;
        if index.is_multiple_of(1024) {
            conn.prepare_cached("DELETE FROM _nimbus_requests WHERE applied_index < ?1")?
                .execute([index.saturating_sub(REQUEST_MEMORY) as i64])?;
        }
        Ok(Applied::Done(outcomes))
    }

    /// Runs read-only statements (see [`Database::reads_only`]) on a read connection; the
    /// connection is read-only, so a statement that writes fails instead.
    pub fn read(&self, statements: &[Statement], budget: Budget) -> Result<Vec<QueryResult>, StatementFailure> {
        self.with_reader(|conn, meter| {
            let mut results = Vec::with_capacity(statements.len());
            let mut answered = 0u64;
            for (index, statement) in statements.iter().enumerate() {
                let left = Budget { max_result_bytes: budget.max_result_bytes.saturating_sub(answered), ..budget };
                let result = run_statement(conn, meter, left, statement, index)?;
                answered += result_bytes(&result.rows);
                results.push(result);
            }
            Ok(results)
        })
    }

    /// True when every statement only reads (SQLite decides, at prepare; a statement that
    /// does not compile here counts as a write and the leader reports its error). Cheap: the
    /// statements are prepared from the read connection's cache, nothing runs.
    pub fn reads_only(&self, statements: &[Statement]) -> Result<bool, StatementFailure> {
        self.with_reader(|conn, _| {
            Ok(statements.iter().all(|statement| conn.prepare_cached(&statement.sql).is_ok_and(|stmt| stmt.readonly())))
        })
    }

    /// Lends `work` a read connection from the pool (opening one if none is idle).
    fn with_reader<T>(
        &self,
        work: impl FnOnce(&Connection, &Meter) -> Result<T, StatementFailure>,
    ) -> Result<T, StatementFailure> {
        let (conn, meter) = match self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(reader) => reader,
            None => {
                let conn = self.open_reader().map_err(|e| failure(0, e))?;
                let meter = Meter::install(&conn);
                (conn, meter)
            }
        };
        let result = work(&conn, &meter);
        meter.stop();
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() < MAX_IDLE_READERS {
            readers.push((conn, meter));
        }
        result
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.set_prepared_statement_cache_capacity(256);
        conn.authorizer(Some(|context: AuthContext<'_>| authorize(&context)));
        Ok(conn)
    }

    /// Copies the database to `target` with SQLite's online backup API.
    pub fn backup_to(&self, target: &Path) -> rusqlite::Result<()> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.trusted.store(true, Ordering::Relaxed);
        let result = writer.conn.backup(rusqlite::MAIN_DB, target, None);
        writer.trusted.store(false, Ordering::Relaxed);
        result
    }

    /// SHA-256 over the user schema and every row of every user table, in a fixed order: two
    /// replicas with equal checksums hold the same data. (`_nimbus_*` bookkeeping is left out.)
    pub fn checksum(&self) -> rusqlite::Result<String> {
        let conn = self.open_reader()?;
        let mut hash = Sha256::new();
        let mut tables = Vec::new();
        {
            let mut schema = conn.prepare(
                "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE tbl_name NOT LIKE '\\_nimbus\\_%' ESCAPE '\\' ORDER BY type, name",
            )?;
            let mut rows = schema.query([])?;
            while let Some(row) = rows.next()? {
                for i in 0..4 {
                    hash_value(&mut hash, row.get_ref(i)?);
                }
                let (kind, name): (String, String) = (row.get(0)?, row.get(1)?);
                if kind == "table" && !name.starts_with("sqlite_") {
                    tables.push(name);
                }
            }
        }
        for table in tables {
            let quoted = table.replace('"', "\"\"");
            let columns = conn.prepare(&format!("SELECT * FROM \"{quoted}\" LIMIT 0"))?.column_count();
            let order = (1..=columns.max(1)).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
            let mut select = conn.prepare(&format!("SELECT * FROM \"{quoted}\" ORDER BY {order}"))?;
            let mut rows = select.query([])?;
            while let Some(row) = rows.next()? {
                for i in 0..columns {
                    hash_value(&mut hash, row.get_ref(i)?);
                }
            }
        }
        Ok(hex::encode(hash.finalize()))
    }

    /// Size of the database file in bytes (without its WAL).
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

fn hash_value(hash: &mut Sha256, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => hash.update([0]),
        ValueRef::Integer(i) => {
            hash.update([1]);
            hash.update(i.to_le_bytes());
        }
        ValueRef::Real(r) => {
            hash.update([2]);
            hash.update(r.to_bits().to_le_bytes());
        }
        ValueRef::Text(t) => {
            hash.update([3]);
            hash.update((t.len() as u64).to_le_bytes());
            hash.update(t);
        }
        ValueRef::Blob(b) => {
            hash.update([4]);
            hash.update((b.len() as u64).to_le_bytes());
            hash.update(b);
        }
    }
}

fn recorded(conn: &Connection, id: u128) -> rusqlite::Result<Option<Outcome>> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached("SELECT outcome FROM _nimbus_requests WHERE id = ?1")?
        .query_row([id.to_be_bytes().to_vec()], |row| row.get(0))
        .optional()?;
    Ok(bytes.and_then(|b| postcard::from_bytes(&b).ok()))
}

fn record(conn: &Connection, id: u128, index: u64, outcome: &Outcome) -> rusqlite::Result<()> {
    let mut bytes = postcard::to_allocvec(outcome).unwrap_or_default();
    if bytes.len() > MAX_RECORDED_OUTCOME {
        let slim = match outcome {
            Outcome::Statements(results) => {
                Outcome::Statements(results.iter().map(|r| QueryResult { rows: Vec::new(), ..r.clone() }).collect())
            }
            other => other.clone(),
        };
        bytes = postcard::to_allocvec(&slim).unwrap_or_default();
    }
    conn.prepare_cached("INSERT OR REPLACE INTO _nimbus_requests (id, applied_index, outcome) VALUES (?1, ?2, ?3)")?
        .execute(rusqlite::params![id.to_be_bytes().to_vec(), index as i64, bytes])?;
    Ok(())
}

fn run_request(conn: &Connection, meter: &Meter, budget: Budget, kind: &WriteKind) -> Outcome {
    match kind {
        WriteKind::Statements(statements) => {
            let mut results = Vec::with_capacity(statements.len());
            let mut answered = 0u64;
            for (index, statement) in statements.iter().enumerate() {
                let left = Budget { max_result_bytes: budget.max_result_bytes.saturating_sub(answered), ..budget };
                match run_statement(conn, meter, left, statement, index) {
                    Ok(result) => {
                        answered += result_bytes(&result.rows);
                        results.push(result);
                    }
                    Err(failure) => return Outcome::Failed(failure),
                }
            }
            Outcome::Statements(results)
        }
        WriteKind::Script(sql) => {
            let mut batch = rusqlite::Batch::new(conn, sql);
            let mut count = 0u32;
            loop {
                meter.start(budget.max_vm_steps);
                match batch.next() {
                    Ok(Some(mut stmt)) => {
                        let mut rows = stmt.raw_query();
                        loop {
                            match rows.next() {
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                                Err(e) => return Outcome::Failed(metered_failure(count as usize, e, meter, budget)),
                            }
                        }
                        count += 1;
                    }
                    Ok(None) => return Outcome::Script(count),
                    Err(e) => return Outcome::Failed(failure(count as usize, e)),
                }
            }
        }
    }
}

/// Refuses statements over D1's limits before SQLite sees them.
pub fn check_limits(statement: &Statement, index: usize) -> Result<(), StatementFailure> {
    if statement.sql.len() > MAX_STATEMENT_BYTES {
        return Err(failure(
            index,
            format!("statement is {} bytes, over the limit of {MAX_STATEMENT_BYTES}", statement.sql.len()),
        ));
    }
    if statement.params.len() > MAX_PARAMS {
        return Err(failure(
            index,
            format!("{} parameters bound, over the limit of {MAX_PARAMS}", statement.params.len()),
        ));
    }
    Ok(())
}

/// A failed step, named for the budget when the progress handler stopped it.
fn metered_failure(index: usize, error: rusqlite::Error, meter: &Meter, budget: Budget) -> StatementFailure {
    if meter.exhausted() {
        failure(
            index,
            format!(
                "statement stopped: it ran past its work budget of {} SQLite VM steps (d1.max_vm_steps)",
                budget.max_vm_steps
            ),
        )
    } else {
        failure(index, error)
    }
}

/// Bytes a row takes in an answer (its values' sizes, 8 for a number).
fn row_bytes(values: &[Value]) -> u64 {
    values
        .iter()
        .map(|v| match v {
            Value::Null => 1,
            Value::Integer(_) | Value::Real(_) => 8,
            Value::Text(t) => t.len() as u64,
            Value::Blob(b) => b.len() as u64,
        })
        .sum()
}

fn result_bytes(rows: &[Vec<Value>]) -> u64 {
    rows.iter().map(|r| row_bytes(r)).sum()
}

fn run_statement(
    conn: &Connection,
    meter: &Meter,
    budget: Budget,
    statement: &Statement,
    index: usize,
) -> Result<QueryResult, StatementFailure> {
    check_limits(statement, index)?;
    meter.start(budget.max_vm_steps);
    let started = Instant::now();
    let mut stmt = conn.prepare_cached(&statement.sql).map_err(|e| failure(index, e))?;
    let expected = stmt.parameter_count();
    if expected != statement.params.len() {
        return Err(failure(
            index,
            format!("the statement has {expected} parameters but {} were bound", statement.params.len()),
        ));
    }
    for (i, value) in statement.params.iter().enumerate() {
        let bound = match value {
            Value::Null => stmt.raw_bind_parameter(i + 1, rusqlite::types::Null),
            Value::Integer(v) => stmt.raw_bind_parameter(i + 1, v),
            Value::Real(v) => stmt.raw_bind_parameter(i + 1, v),
            Value::Text(v) => stmt.raw_bind_parameter(i + 1, v),
            Value::Blob(v) => stmt.raw_bind_parameter(i + 1, v),
        };
        bound.map_err(|e| failure(index, e))?;
    }
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let read_only = stmt.readonly();
    let mut rows = Vec::new();
    {
        let mut cursor = stmt.raw_query();
        let mut answered = 0u64;
        while let Some(row) = cursor.next().map_err(|e| metered_failure(index, e, meter, budget))? {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                values.push(to_value(row.get_ref(i).map_err(|e| failure(index, e))?));
            }
            let size = row_bytes(&values);
            if size > budget.max_row_bytes {
                return Err(failure(
                    index,
                    format!("a row of {size} bytes is over the limit of {} bytes per row", budget.max_row_bytes),
                ));
            }
            answered += size;
            if answered > budget.max_result_bytes {
                return Err(failure(
                    index,
                    format!(
                        "the answer passed {} bytes, the limit for one query (d1.max_result_bytes); select fewer rows or columns",
                        budget.max_result_bytes
                    ),
                ));
            }
            rows.push(values);
        }
    }
    Ok(QueryResult {
        columns,
        rows,
        changes: if read_only { 0 } else { conn.changes() },
        last_row_id: conn.last_insert_rowid(),
        duration_us: started.elapsed().as_micros() as u64,
    })
}

fn to_value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn is_internal_table(name: &str) -> bool {
    name.starts_with("_nimbus_")
}

/// The authorizer for user SQL on every connection.
fn authorize(context: &AuthContext<'_>) -> Authorization {
    match &context.action {
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Authorization::Deny,
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Pragma { pragma_name, pragma_value } => {
            let name = pragma_name.to_ascii_lowercase();
            let switch = matches!(name.as_str(), "foreign_keys" | "defer_foreign_keys");
            if ALLOWED_PRAGMAS.contains(&name.as_str()) && (pragma_value.is_none() || switch) {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Insert { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::DropTable { table_name }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::CreateIndex { table_name, .. }
        | AuthAction::CreateTrigger { table_name, .. }
            if is_internal_table(table_name) && context.database_name != Some("temp") =>
        {
            Authorization::Deny
        }
        AuthAction::CreateTable { table_name } if is_internal_table(table_name) => Authorization::Deny,
        AuthAction::Function { function_name } if function_name.eq_ignore_ascii_case("total_changes") => {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// Replaces SQLite's non-deterministic built-ins on the writer connection.
fn install_deterministic_functions(conn: &Connection, determinism: &Arc<Determinism>) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8;
    let d = determinism.clone();
    conn.create_scalar_function("random", 0, flags, move |_| Ok(d.next_u64() as i64))?;
    let d = determinism.clone();
    conn.create_scalar_function("randomblob", 1, flags, move |ctx| {
        let n = ctx.get::<i64>(0).unwrap_or(1).clamp(1, 1 << 20) as usize;
        let mut bytes = Vec::with_capacity(n + 8);
        while bytes.len() < n {
            bytes.extend_from_slice(&d.next_u64().to_le_bytes());
        }
        bytes.truncate(n);
        Ok(bytes)
    })?;
    // The built-in date functions, evaluated on a private connection with 'now' replaced.
    let helper = Arc::new(Mutex::new(Connection::open_in_memory()?));
    for name in ["date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff"] {
        let (d, helper) = (determinism.clone(), helper.clone());
        conn.create_scalar_function(name, -1, flags, move |ctx| date_function(name, ctx, &d, &helper))?;
    }
    for (name, builtin) in [("current_date", "date"), ("current_time", "time"), ("current_timestamp", "datetime")] {
        let (d, helper) = (determinism.clone(), helper.clone());
        conn.create_scalar_function(name, 0, flags, move |ctx| date_function(builtin, ctx, &d, &helper))?;
    }
    Ok(())
}

fn date_function(
    name: &str,
    ctx: &Context<'_>,
    determinism: &Determinism,
    helper: &Mutex<Connection>,
) -> rusqlite::Result<rusqlite::types::Value> {
    use rusqlite::types::Value as Sql;
    let now = Sql::Real(determinism.now());
    let mut args: Vec<Sql> = (0..ctx.len())
        .map(|i| match ctx.get_raw(i) {
            ValueRef::Text(t) if t.eq_ignore_ascii_case(b"now") => now.clone(),
            other => Sql::from(other),
        })
        .collect();
    // A date function without a time value means 'now' (for strftime, after the format).
    let time_arg = usize::from(name == "strftime");
    if args.len() == time_arg && name != "timediff" {
        args.push(now);
    }
    let placeholders = (1..=args.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    let helper = helper.lock().unwrap_or_else(|p| p.into_inner());
    let mut stmt = helper.prepare_cached(&format!("SELECT {name}({placeholders})"))?;
    stmt.query_row(rusqlite::params_from_iter(args), |row| row.get(0))
}
