//! The state machine: queues, consumers, messages, leases and cron claims in one SQLite file
//! every replica writes from the Raft log.
//!
//! Commands ([`Command`]) are typed and carry every choice that must be made once (message
//! ids, lease ids, times), so `apply` is deterministic: every replica decides the same
//! preconditions on the same state and gives the same [`Reply`]. A refused command is a
//! [`Refusal`] and changes nothing.
//!
//! Delivery rests on three rules kept here:
//! - a message is in at most one lease; a lease names its holder and a deadline (`until_ms`);
//! - only the holder's `Settle` of that lease removes or reschedules its messages: a late
//!   settle after the lease expired (and its messages were leased again) is refused, so a
//!   message is never lost to a slow consumer, only delivered again;
//! - `Expire` gives the messages of every lease past its deadline back to the queue.
//!
//! Messages wait in a due-time index (`messages_due`: queue, then due time, then arrival),
//! so the dispatcher finds what is due with one range scan; there is no timer per message.
//! Retries past `max_retries` move to the dead-letter queue in the same command, or are
//! dropped and counted when there is none.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::QueueError;

/// The application's name in the Raft group.
pub const APP: &str = "queues";

/// How a message's body was encoded by its producer (Cloudflare's `contentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentType {
    Json,
    Text,
    Bytes,
    /// JavaScript's structured clone; Nimbus carries it as JSON.
    V8,
}

impl ContentType {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Json => "json",
            ContentType::Text => "text",
            ContentType::Bytes => "bytes",
            ContentType::V8 => "v8",
        }
    }

    pub fn parse(name: &str) -> Option<ContentType> {
        Some(match name {
            "json" => ContentType::Json,
            "text" => ContentType::Text,
            "bytes" => ContentType::Bytes,
            "v8" => ContentType::V8,
            _ => return None,
        })
    }
}

/// A message as a producer sends it: its id is chosen by the node that took the send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    pub id: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub content_type: ContentType,
    pub delay_secs: u32,
}

/// A message as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub content_type: ContentType,
    /// When it was sent (milliseconds since the epoch).
    pub sent_ms: u64,
    /// Deliveries so far, this one included.
    pub attempts: u32,
}

/// A consumer's settings, Cloudflare's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerSettings {
    pub max_batch_size: u32,
    pub max_batch_timeout_secs: u32,
    pub max_retries: u32,
    pub dead_letter_queue: Option<String>,
    pub retry_delay_secs: u32,
    /// Batches of this queue in flight at once.
    pub max_concurrency: u32,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            max_batch_size: 10,
            max_batch_timeout_secs: 5,
            max_retries: 3,
            dead_letter_queue: None,
            retry_delay_secs: 0,
            max_concurrency: 10,
        }
    }
}

/// Who consumes a queue: a worker's `queue` handler, or HTTP pull clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsumerKind {
    Worker(String),
    HttpPull,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub kind: ConsumerKind,
    pub settings: ConsumerSettings,
}

/// What a consumer decided for one message of its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Ack,
    /// Deliver again; after this many seconds, or by the consumer's backoff when `None`.
    Retry(Option<u32>),
}

/// How a cron run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Ok,
    Error(String),
    /// Due while no leader could run it, and older than the catch-up deadline when one could.
    Skipped,
}

/// A command in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateQueue {
        name: String,
        time_ms: u64,
    },
    DeleteQueue {
        name: String,
    },
    /// Sets the queue's one consumer (creating its dead-letter queue when missing).
    PutConsumer {
        queue: String,
        consumer: Consumer,
        time_ms: u64,
    },
    DeleteConsumer {
        queue: String,
    },
    Send {
        queue: String,
        messages: Vec<NewMessage>,
        time_ms: u64,
    },
    /// Leases up to `max` messages due at `time_ms` to `holder` until `until_ms`.
    Lease {
        queue: String,
        lease: String,
        holder: String,
        max: u32,
        time_ms: u64,
        until_ms: u64,
    },
    /// The holder's decisions for messages of its lease; messages not named stay leased.
    Settle {
        lease: String,
        decisions: Vec<(String, Decision)>,
        time_ms: u64,
    },
    /// Gives back the messages of leases past their deadline; drops messages past retention.
    Expire {
        time_ms: u64,
        retention_ms: u64,
    },
    /// Claims one run of `cron` of `worker` at `scheduled_ms` for `holder`.
    Claim {
        worker: String,
        cron: String,
        scheduled_ms: u64,
        holder: String,
        time_ms: u64,
        status: Option<RunStatus>,
    },
    Outcome {
        worker: String,
        cron: String,
        scheduled_ms: u64,
        status: RunStatus,
        duration_ms: u64,
    },
}

/// Why a command changed nothing; every replica refuses alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    NoSuchQueue(String),
    QueueExists(String),
    NoConsumer(String),
    /// The queue's consumer is of the other kind (a worker's, or HTTP pull).
    WrongConsumer(String),
    /// The lease is gone: settled, or expired and its messages given back.
    NoSuchLease(String),
    /// `max_concurrency` batches are in flight already.
    Busy,
    /// Someone claimed this tick already.
    Claimed,
    Malformed(String),
}

/// What settling a lease did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    pub acked: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Done,
    /// `CreateQueue`: whether it is new.
    Created(bool),
    Leased(Vec<Message>),
    Settled(Settled),
    /// `Expire`: leases expired, messages given back, and what retries and retention dropped.
    Expired {
        leases: u64,
        returned: u64,
        settled: Settled,
        retention_dropped: u64,
    },
    Refused(Refusal),
}

/// A queue with its counts, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    pub created_ms: u64,
    pub consumer: Option<Consumer>,
    /// Messages stored (waiting, delayed or in flight).
    pub backlog: u64,
    pub in_flight: u64,
    pub leases: u64,
    pub oldest_sent_ms: Option<u64>,
    pub sent: u64,
    pub acked: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

/// A lease as its holder runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub queue: String,
    pub holder: String,
    pub until_ms: u64,
}

/// What the dispatcher needs to know about a queue with a worker consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub queue: String,
    pub worker: String,
    pub settings: ConsumerSettings,
    pub leases: u32,
    /// Messages due at the time asked, up to `max_batch_size`.
    pub due: u32,
    /// When the oldest of the due messages became due.
    pub oldest_due_ms: Option<u64>,
    /// When the next message not yet due becomes due.
    pub next_due_ms: Option<u64>,
}

/// A cron run as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub worker: String,
    pub cron: String,
    pub scheduled_ms: u64,
    pub holder: String,
    pub claimed_ms: u64,
    /// `None` while it runs (or if its node died while it ran).
    pub status: Option<RunStatus>,
    pub duration_ms: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 0), applied_index INTEGER NOT NULL,
    next_seq INTEGER NOT NULL);
INSERT OR IGNORE INTO state VALUES (0, 0, 1);
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, consumer BLOB,
    consumer_worker TEXT,
    sent INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0, retried INTEGER NOT NULL DEFAULT 0,
    dead_lettered INTEGER NOT NULL DEFAULT 0, dropped INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL,
    body BLOB NOT NULL, content_type TEXT NOT NULL, sent_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL, lease TEXT);
CREATE INDEX IF NOT EXISTS messages_due ON messages (queue, due_ms, seq) WHERE lease IS NULL;
CREATE INDEX IF NOT EXISTS messages_by_lease ON messages (lease) WHERE lease IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_by_age ON messages (queue, sent_ms);
CREATE INDEX IF NOT EXISTS messages_by_sent ON messages (sent_ms);
CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, queue TEXT NOT NULL, holder TEXT NOT NULL,
    until_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS leases_by_holder ON leases (holder);
CREATE INDEX IF NOT EXISTS leases_by_queue ON leases (queue);
CREATE TABLE IF NOT EXISTS runs (worker TEXT NOT NULL, cron TEXT NOT NULL, scheduled_ms INTEGER NOT NULL,
    holder TEXT NOT NULL, claimed_ms INTEGER NOT NULL, status BLOB, duration_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (worker, cron, scheduled_ms)) WITHOUT ROWID;
";

/// Cron runs kept per (worker, cron): older ones are forgotten as new ones are claimed.
pub const RUNS_KEPT: i64 = 100;
/// The longest a retry's backoff grows to (and the longest delay a producer may ask): 12 h.
pub const MAX_DELAY_SECS: u32 = 12 * 3600;

type Sql<T> = rusqlite::Result<T>;

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding our own types to a Vec cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Sql<T> {
    postcard::from_bytes(bytes).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn open_connection(path: &Path) -> Sql<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The Raft log is the durable record: a machine crash loses at most what the log replays.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

fn sql(e: rusqlite::Error) -> QueueError {
    QueueError::Internal(format!("queues state: {e}"))
}

/// The delay before retry `attempts` (1 after the first delivery): `retry_delay` doubled per
/// attempt, capped at 12 h; an explicit delay wins.
pub fn backoff_secs(settings: &ConsumerSettings, attempts: u32, explicit: Option<u32>) -> u32 {
    if let Some(delay) = explicit {
        return delay.min(MAX_DELAY_SECS);
    }
    let doubled = u64::from(settings.retry_delay_secs) << attempts.saturating_sub(1).min(20);
    doubled.min(u64::from(MAX_DELAY_SECS)) as u32
}

/// The state file of this replica.
pub struct State {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// The last applied index, for the loops waiting on changes.
    applied: tokio::sync::watch::Sender<u64>,
}

impl State {
    /// Opens (creating if absent) the state file at `path`.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| QueueError::Internal(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = open_connection(path).map_err(sql)?;
        let (applied, _) = tokio::sync::watch::channel(0);
        Ok(State { path: path.to_owned(), conn: Mutex::new(conn), applied })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes when a command has been applied.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The state machine's entry point: applies the commands of log entry `index`. `Err` only
    /// when the file itself fails.
    pub fn apply(&self, index: u64, commands: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, QueueError> {
        let replies = {
            let mut conn = self.lock();
            let tx = conn.transaction().map_err(sql)?;
            let applied: i64 = tx.query_row("SELECT applied_index FROM state", [], |r| r.get(0)).map_err(sql)?;
            if index <= applied as u64 {
                // A replay after a crash: this file holds the entry already.
                return Ok(commands.iter().map(|_| encode(&Reply::Done)).collect());
            }
            let mut replies = Vec::with_capacity(commands.len());
            for command in commands {
                let reply = match postcard::from_bytes::<Command>(command) {
                    Ok(command) => apply(&tx, command).map_err(sql)?,
                    Err(e) => Reply::Refused(Refusal::Malformed(e.to_string())),
                };
                replies.push(encode(&reply));
            }
            tx.execute("UPDATE state SET applied_index = ?1", [index as i64]).map_err(sql)?;
            tx.commit().map_err(sql)?;
            replies
        };
        self.applied.send_replace(index);
        Ok(replies)
    }

    /// A copy of the whole file, taken with SQLite's backup API.
    pub fn snapshot(&self) -> Result<Vec<u8>, QueueError> {
        let copy = self.path.with_extension("snapshot");
        remove_files(&copy);
        self.lock().backup(rusqlite::MAIN_DB, &copy, None).map_err(sql)?;
        let bytes = std::fs::read(&copy).map_err(|e| QueueError::Internal(format!("reading a snapshot: {e}")))?;
        remove_files(&copy);
        Ok(bytes)
    }

    /// Replaces the whole state with a snapshot's (`None`: empty).
    pub fn restore(&self, image: Option<&[u8]>) -> Result<(), QueueError> {
        {
            let mut conn = self.lock();
            let incoming = self.path.with_extension("incoming");
            remove_files(&incoming);
            if let Some(bytes) = image {
                std::fs::write(&incoming, bytes)
                    .map_err(|e| QueueError::Internal(format!("writing a snapshot: {e}")))?;
            }
            let fresh = open_connection(&incoming).map_err(sql)?;
            let target = rusqlite::backup::Backup::new(&fresh, &mut conn).map_err(sql)?;
            target.run_to_completion(1024, std::time::Duration::ZERO, None).map_err(sql)?;
            drop(target);
            drop(fresh);
            remove_files(&incoming);
        }
        let index = self.applied_index()?;
        self.applied.send_replace(index);
        Ok(())
    }

    pub fn applied_index(&self) -> Result<u64, QueueError> {
        let conn = self.lock();
        conn.query_row("SELECT applied_index FROM state", [], |r| r.get::<_, i64>(0)).map(|i| i as u64).map_err(sql)
    }

    pub fn queues(&self) -> Result<Vec<QueueInfo>, QueueError> {
        let conn = self.lock();
        let names: Vec<String> = conn
            .prepare_cached("SELECT name FROM queues ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(sql)?;
        names.iter().filter_map(|name| queue_info(&conn, name).transpose()).collect::<Sql<_>>().map_err(sql)
    }

    /// Whether `name` exists (`None`: it does not), and its consumer: cheaper than
    /// [`State::queue`], which counts the messages.
    pub fn consumer(&self, name: &str) -> Result<Option<Option<Consumer>>, QueueError> {
        let conn = self.lock();
        let row: Option<Option<Vec<u8>>> = conn
            .query_row("SELECT consumer FROM queues WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        row.map(|c| c.map(|c| decode(&c)).transpose()).transpose().map_err(sql)
    }

    pub fn queue(&self, name: &str) -> Result<Option<QueueInfo>, QueueError> {
        queue_info(&self.lock(), name).map_err(sql)
    }

    /// Up to `max` messages of `queue` that wait for delivery, next first, without leasing them.
    pub fn peek(&self, queue: &str, max: u32) -> Result<Vec<Message>, QueueError> {
        let conn = self.lock();
        let mut statement = conn
            .prepare_cached(
                "SELECT id, body, content_type, sent_ms, attempts FROM messages
                 WHERE queue = ?1 AND lease IS NULL ORDER BY due_ms, seq LIMIT ?2",
            )
            .map_err(sql)?;
        let rows = statement.query_map(params![queue, max], message_row).map_err(sql)?;
        rows.collect::<Sql<_>>().map_err(sql)
    }

    /// The messages of lease `lease`, in arrival order.
    pub fn leased(&self, lease: &str) -> Result<Vec<Message>, QueueError> {
        let conn = self.lock();
        leased(&conn, lease).map_err(sql)
    }

    /// The leases `holder` holds.
    pub fn leases_of(&self, holder: &str) -> Result<Vec<Lease>, QueueError> {
        let conn = self.lock();
        let mut statement =
            conn.prepare_cached("SELECT id, queue, holder, until_ms FROM leases WHERE holder = ?1").map_err(sql)?;
        let rows = statement.query_map([holder], lease_row).map_err(sql)?;
        rows.collect::<Sql<_>>().map_err(sql)
    }

    /// The leases of `queue` with how many messages each holds, by deadline.
    pub fn leases_in(&self, queue: &str) -> Result<Vec<(Lease, u64)>, QueueError> {
        let conn = self.lock();
        let mut statement = conn
            .prepare_cached(
                "SELECT l.id, l.queue, l.holder, l.until_ms, (SELECT COUNT(*) FROM messages m WHERE m.lease = l.id)
                 FROM leases l WHERE l.queue = ?1 ORDER BY l.until_ms, l.id",
            )
            .map_err(sql)?;
        let rows = statement.query_map([queue], |r| Ok((lease_row(r)?, r.get::<_, i64>(4)? as u64))).map_err(sql)?;
        rows.collect::<Sql<_>>().map_err(sql)
    }

    pub fn lease(&self, id: &str) -> Result<Option<Lease>, QueueError> {
        let conn = self.lock();
        conn.query_row("SELECT id, queue, holder, until_ms FROM leases WHERE id = ?1", [id], lease_row)
            .optional()
            .map_err(sql)
    }

    /// The earliest deadline among the leases, if any.
    pub fn next_expiry(&self) -> Result<Option<u64>, QueueError> {
        let conn = self.lock();
        conn.query_row("SELECT MIN(until_ms) FROM leases", [], |r| r.get::<_, Option<i64>>(0))
            .map(|t| t.map(|t| t as u64))
            .map_err(sql)
    }

    /// Whether a message is past retention at `time_ms`.
    pub fn has_older_than(&self, before_ms: u64) -> Result<bool, QueueError> {
        let conn = self.lock();
        conn.query_row("SELECT EXISTS (SELECT 1 FROM messages WHERE sent_ms < ?1)", [before_ms as i64], |r| r.get(0))
            .map_err(sql)
    }

    /// Every queue with a worker consumer, with what is due at `now_ms`.
    pub fn pending(&self, now_ms: u64) -> Result<Vec<Pending>, QueueError> {
        let conn = self.lock();
        let queues: Vec<(String, Vec<u8>)> = conn
            .prepare_cached("SELECT name, consumer FROM queues WHERE consumer_worker IS NOT NULL ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(sql)?;
        let mut pending = Vec::with_capacity(queues.len());
        for (queue, consumer) in queues {
            let consumer: Consumer = decode(&consumer).map_err(sql)?;
            let ConsumerKind::Worker(worker) = consumer.kind else { continue };
            let settings = consumer.settings;
            let leases: i64 =
                conn.query_row("SELECT COUNT(*) FROM leases WHERE queue = ?1", [&queue], |r| r.get(0)).map_err(sql)?;
            let (due, oldest): (i64, Option<i64>) = conn
                .query_row(
                    "SELECT COUNT(*), MIN(due_ms) FROM (SELECT due_ms FROM messages
                     WHERE queue = ?1 AND lease IS NULL AND due_ms <= ?2 ORDER BY due_ms, seq LIMIT ?3)",
                    params![queue, now_ms as i64, settings.max_batch_size],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql)?;
            let next: Option<i64> = conn
                .query_row(
                    "SELECT MIN(due_ms) FROM messages WHERE queue = ?1 AND lease IS NULL AND due_ms > ?2",
                    params![queue, now_ms as i64],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            pending.push(Pending {
                queue,
                worker,
                settings,
                leases: leases as u32,
                due: due as u32,
                oldest_due_ms: oldest.map(|t| t as u64),
                next_due_ms: next.map(|t| t as u64),
            });
        }
        Ok(pending)
    }

    /// The last run claimed of `cron` of `worker`, if any.
    pub fn last_run(&self, worker: &str, cron: &str) -> Result<Option<u64>, QueueError> {
        let conn = self.lock();
        conn.query_row("SELECT MAX(scheduled_ms) FROM runs WHERE worker = ?1 AND cron = ?2", [worker, cron], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .map(|t| t.map(|t| t as u64))
        .map_err(sql)
    }

    /// The recorded runs of `worker`, newest first, at most `max`.
    pub fn runs(&self, worker: &str, max: u32) -> Result<Vec<Run>, QueueError> {
        let conn = self.lock();
        let mut statement = conn
            .prepare_cached(
                "SELECT worker, cron, scheduled_ms, holder, claimed_ms, status, duration_ms FROM runs
                 WHERE worker = ?1 ORDER BY scheduled_ms DESC, cron LIMIT ?2",
            )
            .map_err(sql)?;
        let rows = statement.query_map(params![worker, max], run_row).map_err(sql)?;
        rows.collect::<Sql<_>>().map_err(sql)
    }

    /// The runs claimed for `holder` that have no outcome yet.
    pub fn runs_of(&self, holder: &str) -> Result<Vec<Run>, QueueError> {
        let conn = self.lock();
        let mut statement = conn
            .prepare_cached(
                "SELECT worker, cron, scheduled_ms, holder, claimed_ms, status, duration_ms FROM runs
                 WHERE holder = ?1 AND status IS NULL",
            )
            .map_err(sql)?;
        let rows = statement.query_map([holder], run_row).map_err(sql)?;
        rows.collect::<Sql<_>>().map_err(sql)
    }
}

fn message_row(r: &rusqlite::Row<'_>) -> Sql<Message> {
    let content_type: String = r.get(2)?;
    Ok(Message {
        id: r.get(0)?,
        body: r.get(1)?,
        content_type: ContentType::parse(&content_type).unwrap_or(ContentType::Bytes),
        sent_ms: r.get::<_, i64>(3)? as u64,
        attempts: r.get::<_, i64>(4)? as u32,
    })
}

fn lease_row(r: &rusqlite::Row<'_>) -> Sql<Lease> {
    Ok(Lease { id: r.get(0)?, queue: r.get(1)?, holder: r.get(2)?, until_ms: r.get::<_, i64>(3)? as u64 })
}

fn run_row(r: &rusqlite::Row<'_>) -> Sql<Run> {
    let status: Option<Vec<u8>> = r.get(5)?;
    Ok(Run {
        worker: r.get(0)?,
        cron: r.get(1)?,
        scheduled_ms: r.get::<_, i64>(2)? as u64,
        holder: r.get(3)?,
        claimed_ms: r.get::<_, i64>(4)? as u64,
        status: status.map(|s| decode(&s)).transpose()?,
        duration_ms: r.get::<_, i64>(6)? as u64,
    })
}

fn leased(conn: &Connection, lease: &str) -> Sql<Vec<Message>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, body, content_type, sent_ms, attempts FROM messages WHERE lease = ?1 ORDER BY seq",
    )?;
    let rows = statement.query_map([lease], message_row)?;
    rows.collect()
}

fn queue_info(conn: &Connection, name: &str) -> Sql<Option<QueueInfo>> {
    let row = conn
        .query_row(
            "SELECT created_ms, consumer, sent, acked, retried, dead_lettered, dropped FROM queues WHERE name = ?1",
            [name],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                    [r.get::<_, i64>(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                ))
            },
        )
        .optional()?;
    let Some((created_ms, consumer, [sent, acked, retried, dead_lettered, dropped])) = row else {
        return Ok(None);
    };
    let (backlog, in_flight, oldest): (i64, i64, Option<i64>) =
        conn.query_row("SELECT COUNT(*), COUNT(lease), MIN(sent_ms) FROM messages WHERE queue = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let leases: i64 = conn.query_row("SELECT COUNT(*) FROM leases WHERE queue = ?1", [name], |r| r.get(0))?;
    Ok(Some(QueueInfo {
        name: name.to_owned(),
        created_ms: created_ms as u64,
        consumer: consumer.map(|c| decode(&c)).transpose()?,
        backlog: backlog as u64,
        in_flight: in_flight as u64,
        leases: leases as u64,
        oldest_sent_ms: oldest.map(|t| t as u64),
        sent: sent as u64,
        acked: acked as u64,
        retried: retried as u64,
        dead_lettered: dead_lettered as u64,
        dropped: dropped as u64,
    }))
}

fn consumer_of(tx: &Transaction<'_>, queue: &str) -> Sql<Option<Option<Consumer>>> {
    let row: Option<Option<Vec<u8>>> =
        tx.query_row("SELECT consumer FROM queues WHERE name = ?1", [queue], |r| r.get(0)).optional()?;
    row.map(|c| c.map(|c| decode(&c)).transpose()).transpose()
}

fn bump(tx: &Transaction<'_>, queue: &str, column: &str, by: u64) -> Sql<()> {
    if by > 0 {
        // `column` is one of ours, never a user's.
        tx.prepare_cached(&format!("UPDATE queues SET {column} = {column} + ?2 WHERE name = ?1"))?
            .execute(params![queue, by as i64])?;
    }
    Ok(())
}

fn create_queue(tx: &Transaction<'_>, name: &str, time_ms: u64) -> Sql<bool> {
    Ok(tx.execute("INSERT OR IGNORE INTO queues (name, created_ms) VALUES (?1, ?2)", params![name, time_ms as i64])?
        == 1)
}

/// Retries message `seq` (its lease already cleared by the caller's update), or moves it to
/// the dead-letter queue, or drops it, by the consumer's settings; counts which.
fn retry(
    tx: &Transaction<'_>,
    queue: &str,
    settings: &ConsumerSettings,
    message: (i64, u32),
    explicit: Option<u32>,
    time_ms: u64,
    settled: &mut Settled,
) -> Sql<()> {
    let (seq, attempts) = message;
    if attempts > settings.max_retries {
        match &settings.dead_letter_queue {
            Some(dlq) if dlq != queue => {
                create_queue(tx, dlq, time_ms)?;
                tx.execute(
                    "UPDATE messages SET queue = ?2, due_ms = ?3, attempts = 0, lease = NULL WHERE seq = ?1",
                    params![seq, dlq, time_ms as i64],
                )?;
                bump(tx, dlq, "sent", 1)?;
                settled.dead_lettered += 1;
            }
            _ => {
                let id: String = tx.query_row("SELECT id FROM messages WHERE seq = ?1", [seq], |r| r.get(0))?;
                tracing::warn!(queue, message = %id, attempts, "message dropped after its last retry (no dead-letter queue)");
                tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])?;
                settled.dropped += 1;
            }
        }
    } else {
        let delay = backoff_secs(settings, attempts, explicit);
        tx.execute(
            "UPDATE messages SET due_ms = ?2, lease = NULL WHERE seq = ?1",
            params![seq, (time_ms + u64::from(delay) * 1000) as i64],
        )?;
        settled.retried += 1;
    }
    Ok(())
}

fn count_settled(tx: &Transaction<'_>, queue: &str, settled: &Settled) -> Sql<()> {
    bump(tx, queue, "acked", settled.acked)?;
    bump(tx, queue, "retried", settled.retried)?;
    bump(tx, queue, "dead_lettered", settled.dead_lettered)?;
    bump(tx, queue, "dropped", settled.dropped)
}

/// Deletes a lease that has no messages left.
fn drop_lease_if_empty(tx: &Transaction<'_>, lease: &str) -> Sql<()> {
    tx.execute("DELETE FROM leases WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE lease = ?1)", [lease])?;
    Ok(())
}

fn apply(tx: &Transaction<'_>, command: Command) -> Sql<Reply> {
    Ok(match command {
        Command::CreateQueue { name, time_ms } => Reply::Created(create_queue(tx, &name, time_ms)?),
        Command::DeleteQueue { name } => {
            if tx.execute("DELETE FROM queues WHERE name = ?1", [&name])? == 0 {
                return Ok(Reply::Refused(Refusal::NoSuchQueue(name)));
            }
            tx.execute("DELETE FROM messages WHERE queue = ?1", [&name])?;
            tx.execute("DELETE FROM leases WHERE queue = ?1", [&name])?;
            Reply::Done
        }
        Command::PutConsumer { queue, consumer, time_ms } => {
            if consumer_of(tx, &queue)?.is_none() {
                return Ok(Reply::Refused(Refusal::NoSuchQueue(queue)));
            }
            if let Some(dlq) = &consumer.settings.dead_letter_queue {
                create_queue(tx, dlq, time_ms)?;
            }
            let worker = match &consumer.kind {
                ConsumerKind::Worker(worker) => Some(worker.clone()),
                ConsumerKind::HttpPull => None,
            };
            tx.execute(
                "UPDATE queues SET consumer = ?2, consumer_worker = ?3 WHERE name = ?1",
                params![queue, encode(&consumer), worker],
            )?;
            Reply::Done
        }
        Command::DeleteConsumer { queue } => match consumer_of(tx, &queue)? {
            None => Reply::Refused(Refusal::NoSuchQueue(queue)),
            Some(None) => Reply::Refused(Refusal::NoConsumer(queue)),
            Some(Some(_)) => {
                tx.execute("UPDATE queues SET consumer = NULL, consumer_worker = NULL WHERE name = ?1", [&queue])?;
                Reply::Done
            }
        },
        Command::Send { queue, messages, time_ms } => {
            if consumer_of(tx, &queue)?.is_none() {
                return Ok(Reply::Refused(Refusal::NoSuchQueue(queue)));
            }
            let mut sent = 0;
            let mut seq: i64 = tx.query_row("SELECT next_seq FROM state", [], |r| r.get(0))?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO messages (seq, id, queue, body, content_type, sent_ms, due_ms, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
            )?;
            for message in messages {
                let due = time_ms + u64::from(message.delay_secs.min(MAX_DELAY_SECS)) * 1000;
                // A retried proposal carries the same ids: the second copy changes nothing.
                let inserted = insert.execute(params![
                    seq,
                    message.id,
                    queue,
                    message.body,
                    message.content_type.as_str(),
                    time_ms as i64,
                    due as i64
                ])?;
                if inserted == 1 {
                    seq += 1;
                    sent += 1;
                }
            }
            drop(insert);
            tx.execute("UPDATE state SET next_seq = ?1", [seq])?;
            bump(tx, &queue, "sent", sent)?;
            Reply::Done
        }
        Command::Lease { queue, lease, holder, max, time_ms, until_ms } => {
            let consumer = match consumer_of(tx, &queue)? {
                None => return Ok(Reply::Refused(Refusal::NoSuchQueue(queue))),
                Some(None) => return Ok(Reply::Refused(Refusal::NoConsumer(queue))),
                Some(Some(consumer)) => consumer,
            };
            if let ConsumerKind::Worker(_) = consumer.kind {
                let leases: i64 =
                    tx.query_row("SELECT COUNT(*) FROM leases WHERE queue = ?1", [&queue], |r| r.get(0))?;
                if leases >= i64::from(consumer.settings.max_concurrency.max(1)) {
                    return Ok(Reply::Refused(Refusal::Busy));
                }
            }
            let taken = tx.execute(
                "UPDATE messages SET lease = ?1, attempts = attempts + 1 WHERE seq IN (SELECT seq FROM messages
                 WHERE queue = ?2 AND lease IS NULL AND due_ms <= ?3 ORDER BY due_ms, seq LIMIT ?4)",
                params![lease, queue, time_ms as i64, max.min(1000)],
            )?;
            if taken > 0 {
                tx.execute(
                    "INSERT OR REPLACE INTO leases (id, queue, holder, until_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![lease, queue, holder, until_ms as i64],
                )?;
            }
            Reply::Leased(leased(tx, &lease)?)
        }
        Command::Settle { lease, decisions, time_ms } => {
            let Some(queue) = tx
                .query_row("SELECT queue FROM leases WHERE id = ?1", [&lease], |r| r.get::<_, String>(0))
                .optional()?
            else {
                return Ok(Reply::Refused(Refusal::NoSuchLease(lease)));
            };
            let settings = consumer_of(tx, &queue)?.flatten().map(|c| c.settings).unwrap_or_default();
            let mut settled = Settled::default();
            for (id, decision) in decisions {
                let Some((seq, attempts)) = tx
                    .query_row("SELECT seq, attempts FROM messages WHERE id = ?1 AND lease = ?2", [&id, &lease], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u32))
                    })
                    .optional()?
                else {
                    continue;
                };
                match decision {
                    Decision::Ack => {
                        tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])?;
                        settled.acked += 1;
                    }
                    Decision::Retry(delay) => {
                        retry(tx, &queue, &settings, (seq, attempts), delay, time_ms, &mut settled)?
                    }
                }
            }
            count_settled(tx, &queue, &settled)?;
            drop_lease_if_empty(tx, &lease)?;
            Reply::Settled(settled)
        }
        Command::Expire { time_ms, retention_ms } => {
            let expired: Vec<(String, String)> = tx
                .prepare_cached("SELECT id, queue FROM leases WHERE until_ms <= ?1 ORDER BY id")?
                .query_map([time_ms as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Sql<_>>()?;
            let mut returned = 0;
            let mut total = Settled::default();
            for (lease, queue) in &expired {
                let settings = consumer_of(tx, queue)?.flatten().map(|c| c.settings).unwrap_or_default();
                let messages: Vec<(i64, u32)> = tx
                    .prepare_cached("SELECT seq, attempts FROM messages WHERE lease = ?1 ORDER BY seq")?
                    .query_map([lease], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u32)))?
                    .collect::<Sql<_>>()?;
                let mut settled = Settled::default();
                for message in messages {
                    // A delivery that never settled counts as a failed attempt, due again now.
                    retry(tx, queue, &settings, message, Some(0), time_ms, &mut settled)?;
                }
                returned += settled.retried;
                settled.retried = 0;
                count_settled(tx, queue, &settled)?;
                total.dead_lettered += settled.dead_lettered;
                total.dropped += settled.dropped;
                tx.execute("DELETE FROM leases WHERE id = ?1", [lease])?;
            }
            let before = time_ms.saturating_sub(retention_ms) as i64;
            let old: Vec<(String, i64)> = tx
                .prepare_cached("SELECT queue, COUNT(*) FROM messages WHERE sent_ms < ?1 GROUP BY queue")?
                .query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Sql<_>>()?;
            let mut retention_dropped = 0;
            for (queue, count) in old {
                bump(tx, &queue, "dropped", count as u64)?;
                retention_dropped += count as u64;
            }
            // Leases keep the messages they still have; a lease left empty goes.
            let emptied: Vec<String> = tx
                .prepare_cached("SELECT DISTINCT lease FROM messages WHERE sent_ms < ?1 AND lease IS NOT NULL")?
                .query_map([before], |r| r.get(0))?
                .collect::<Sql<_>>()?;
            tx.execute("DELETE FROM messages WHERE sent_ms < ?1", [before])?;
            for lease in emptied {
                drop_lease_if_empty(tx, &lease)?;
            }
            Reply::Expired { leases: expired.len() as u64, returned, settled: total, retention_dropped }
        }
        Command::Claim { worker, cron, scheduled_ms, holder, time_ms, status } => {
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO runs (worker, cron, scheduled_ms, holder, claimed_ms, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![worker, cron, scheduled_ms as i64, holder, time_ms as i64, status.as_ref().map(encode)],
            )?;
            if inserted == 0 {
                return Ok(Reply::Refused(Refusal::Claimed));
            }
            tx.execute(
                "DELETE FROM runs WHERE worker = ?1 AND cron = ?2 AND scheduled_ms NOT IN
                 (SELECT scheduled_ms FROM runs WHERE worker = ?1 AND cron = ?2 ORDER BY scheduled_ms DESC LIMIT ?3)",
                params![worker, cron, RUNS_KEPT],
            )?;
            Reply::Done
        }
        Command::Outcome { worker, cron, scheduled_ms, status, duration_ms } => {
            tx.execute(
                "UPDATE runs SET status = ?4, duration_ms = ?5 WHERE worker = ?1 AND cron = ?2 AND scheduled_ms = ?3",
                params![worker, cron, scheduled_ms as i64, encode(&status), duration_ms as i64],
            )?;
            Reply::Done
        }
    })
}
