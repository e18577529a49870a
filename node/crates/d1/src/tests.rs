use super::log_store::LogStore;
use super::sqlite::{Budget, Database};
use super::state_machine::StateMachine;
use super::types::{Outcome, Statement, StorageError, TypeConfig, Value, WriteKind, WriteRequest};
use nimbus_storage::Storage;
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(&dir.path().join("db")).expect("rocksdb");
        let log = LogStore::open(storage.clone())?;
        let sm = StateMachine::open(&dir.path().join("d1"), storage, Default::default())?;
        Ok((dir, log, sm))
    }
}

/// openraft's storage conformance suite, on the RocksDB log and the SQLite state machine.
#[test]
fn log_store_and_state_machine_pass_openraft_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

fn statement(sql: &str, params: Vec<Value>) -> Statement {
    Statement { sql: sql.into(), params }
}

fn write(id: u128, time_ms: i64, statements: Vec<Statement>) -> WriteRequest {
    WriteRequest { id, database: "db".into(), time_ms, kind: WriteKind::Statements(statements) }
}

fn apply(db: &Database, index: u64, requests: &[WriteRequest]) -> Vec<Outcome> {
    let refs: Vec<(usize, &WriteRequest)> = requests.iter().enumerate().collect();
    db.apply(index, &refs, Budget::default()).expect("apply")
}

fn without_durations(outcomes: &[Outcome]) -> Vec<Outcome> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Statements(results) => Outcome::Statements(
                results.iter().map(|r| super::types::QueryResult { duration_us: 0, ..r.clone() }).collect(),
            ),
            other => other.clone(),
        })
        .collect()
}

/// Two replicas applying the same requests, with every non-deterministic function SQLite
/// has, end with equal checksums; a replica whose connection ran other work first (as a
/// restarted one would not) still agrees on last_insert_rowid() and changes().
#[test]
fn replicas_agree_on_non_deterministic_sql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Database::open("db", dir.path().join("a.sqlite")).expect("open a");
    let b = Database::open("db", dir.path().join("b.sqlite")).expect("open b");
    let setup = write(
        1,
        1_700_000_000_000,
        vec![
            statement(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, r INTEGER, blob BLOB, at TEXT, day TEXT, ts TEXT DEFAULT CURRENT_TIMESTAMP, prev INTEGER, n INTEGER)",
                vec![],
            ),
            statement("CREATE TABLE u (x)", vec![]),
        ],
    );
    // Replica a's connection has done other work, so its connection state differs.
    let warm = write(
        2,
        1_700_000_000_000,
        vec![statement("CREATE TABLE warm (x)", vec![]), statement("INSERT INTO warm VALUES (1), (2), (3)", vec![])],
    );
    apply(&a, 1, std::slice::from_ref(&setup));
    apply(&b, 1, std::slice::from_ref(&setup));
    let noisy = vec![
        write(
            10,
            1_700_000_123_456,
            vec![
                statement("INSERT INTO u (x) VALUES (1), (2), (3)", vec![]),
                statement(
                    "INSERT INTO t (r, blob, at, day, prev, n) VALUES (random(), randomblob(16), datetime('now'), date(), last_insert_rowid(), changes())",
                    vec![],
                ),
                statement("INSERT INTO t (r, at, day) VALUES (abs(random()) % 1000, strftime('%s','now'), julianday('now'))", vec![]),
            ],
        ),
        write(11, 1_700_000_999_000, vec![statement("UPDATE t SET n = (SELECT count(*) FROM t) + unixepoch()", vec![])]),
    ];
    let _ = a.apply(2, &[(0, &warm)], Budget::default()).expect("warm up");
    let outcomes_a = apply(&a, 3, &noisy);
    let outcomes_b = apply(&b, 3, &noisy);
    assert_eq!(without_durations(&outcomes_a), without_durations(&outcomes_b), "the same results on both replicas");
    assert_eq!(outcomes_a.len(), 2);
    for outcome in &outcomes_a {
        assert!(matches!(outcome, Outcome::Statements(_)), "{outcome:?}");
    }
    let table = |db: &Database| {
        db.read(&[statement("SELECT * FROM t ORDER BY id", vec![])], Budget::default()).expect("read")[0].rows.clone()
    };
    assert_eq!(table(&a), table(&b));
    let rows = table(&a);
    assert_eq!(rows[0][3], Value::Text("2023-11-14 22:15:23".into()), "'now' is the leader's time");
    assert_eq!(rows[0][6], Value::Integer(3), "last_insert_rowid() is the request's own last insert");
    assert_eq!(rows[0][7], Value::Integer(1_700_001_001), "unixepoch() is the second request's time, plus 2 rows");
    assert_ne!(rows[0][1], rows[1][1], "random() still varies within a request");
    // The table `warm` only exists on a; drop it there so the remaining data must match.
    let drop_warm = write(3, 0, vec![statement("DROP TABLE warm", vec![])]);
    apply(&a, 5, &[drop_warm]);
    assert_eq!(a.checksum().expect("a"), b.checksum().expect("b"));
}

/// A failing statement in a batch applies none of it, says which statement failed, and a
/// retried request id is answered from the record instead of applied again.
#[test]
fn a_failed_batch_applies_nothing_and_retries_are_not_applied_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open("db", dir.path().join("db.sqlite")).expect("open");
    apply(&db, 1, &[write(1, 0, vec![statement("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)", vec![])])]);
    let batch = write(
        2,
        0,
        vec![
            statement("INSERT INTO t (v) VALUES (?1)", vec![Value::Text("a".into())]),
            statement("INSERT INTO t (v) VALUES (?1)", vec![Value::Text("a".into())]),
        ],
    );
    let outcome = apply(&db, 2, &[batch]);
    let Outcome::Failed(failure) = &outcome[0] else { panic!("expected a failure, got {outcome:?}") };
    assert_eq!(failure.index, 1);
    assert!(failure.message.contains("UNIQUE"), "{}", failure.message);
    let count = |db: &Database| {
        db.read(&[statement("SELECT count(*) FROM t", vec![])], Budget::default()).expect("count")[0].rows[0][0].clone()
    };
    assert_eq!(count(&db), Value::Integer(0));

    let insert = write(3, 0, vec![statement("INSERT INTO t (v) VALUES ('b')", vec![])]);
    let first = apply(&db, 3, std::slice::from_ref(&insert));
    let again = apply(&db, 4, &[insert]);
    assert_eq!(without_durations(&first), without_durations(&again), "the retry gets the first outcome");
    assert_eq!(count(&db), Value::Integer(1));
}

#[test]
fn user_sql_cannot_open_transactions_or_touch_internal_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open("db", dir.path().join("db.sqlite")).expect("open");
    for (index, sql) in [
        "BEGIN",
        "COMMIT",
        "SAVEPOINT x",
        "DELETE FROM _nimbus_requests",
        "UPDATE _nimbus_state SET applied_index = 0",
        "ATTACH 'x.db' AS x",
        "PRAGMA journal_mode = DELETE",
        "SELECT total_changes()",
    ]
    .into_iter()
    .enumerate()
    {
        let index = index as u64 + 1;
        let outcome = apply(&db, index, &[write(index.into(), 0, vec![statement(sql, vec![])])]);
        assert!(matches!(&outcome[0], Outcome::Failed(_)), "{sql} must be refused: {outcome:?}");
        assert_eq!(db.applied_index().expect("index"), index, "the bookkeeping is intact");
    }
}

/// A create that reaches the state machine with a name D1 does not allow (a forged or buggy
/// leader's entry) is refused alike on every replica and writes no file, inside `data_dir` or
/// out of it.
#[test]
fn the_state_machine_refuses_database_names_that_could_leave_its_directory() {
    use super::types::{Applied, Command};
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(&dir.path().join("db")).expect("rocksdb");
    let d1_dir = dir.path().join("data/d1");
    let sm = StateMachine::open(&d1_dir, storage, Default::default()).expect("state machine");
    for name in ["../x", "../../etc/x", "/tmp/x", "a/b", "UPPER", "", ".hidden", "x\0y"] {
        let applied = sm.apply_command(7, Command::CreateDatabase { name: name.into() }).expect("apply");
        assert!(matches!(applied, Applied::Refused { .. }), "{name:?}: {applied:?}");
        assert!(sm.database(name).is_none(), "{name:?}");
    }
    let leaked: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.to_string_lossy().contains(".sqlite")).collect();
    assert!(leaked.is_empty(), "no SQLite file was written: {leaked:?}");
    let applied = sm.apply_command(8, Command::CreateDatabase { name: "ok_name-1".into() }).expect("apply");
    assert_eq!(applied, Applied::Database { created: true });
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// A recursive CTE that never ends stops at its work budget, with a message that names it,
/// as a read and as a write (where it fails identically on two replicas); a row over D1's
/// 2 MB limit is refused.
#[test]
fn statements_stop_at_their_work_budget_and_rows_at_their_size_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Database::open("db", dir.path().join("a.sqlite")).expect("open a");
    let b = Database::open("db", dir.path().join("b.sqlite")).expect("open b");
    let budget = Budget { max_vm_steps: 5_000_000, ..Budget::default() };
    let bomb = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";
    let failure = a.read(&[statement(bomb, vec![])], budget).expect_err("the bomb stops");
    assert!(failure.message.contains("work budget of 5000000"), "{}", failure.message);
    // The connection serves the next statement.
    let ok = a.read(&[statement("SELECT 1", vec![])], budget).expect("next read");
    assert_eq!(ok[0].rows, vec![vec![Value::Integer(1)]]);

    let setup = write(1, 0, vec![statement("CREATE TABLE t (x)", vec![])]);
    let insert = format!("INSERT INTO t {bomb}");
    let bombing = write(2, 0, vec![statement("INSERT INTO t VALUES (1)", vec![]), statement(&insert, vec![])]);
    for db in [&a, &b] {
        db.apply(1, &[(0, &setup)], budget).expect("setup");
    }
    let outcomes: Vec<_> = [&a, &b]
        .into_iter()
        .map(|db| without_durations(&db.apply(2, &[(0, &bombing)], budget).expect("apply")))
        .collect();
    assert_eq!(outcomes[0], outcomes[1], "both replicas stop it alike");
    assert!(
        matches!(&outcomes[0][0], Outcome::Failed(f) if f.index == 1 && f.message.contains("work budget")),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(a.checksum().expect("a"), b.checksum().expect("b"));
    let count = a.read(&[statement("SELECT count(*) FROM t", vec![])], budget).expect("count");
    assert_eq!(count[0].rows, vec![vec![Value::Integer(0)]], "the failed request rolled back whole");

    // In one entry with another request: SQLite rolls back the whole transaction when it
    // interrupts a write, and the entry is applied again with the bomb failed up front, so
    // the other request's row survives.
    let mut neighbour = write(4, 0, vec![statement("INSERT INTO t VALUES (42)", vec![])]);
    neighbour.id = 4;
    let mut again = bombing.clone();
    again.id = 5;
    for db in [&a, &b] {
        let outcomes = without_durations(&db.apply(5, &[(0, &neighbour), (1, &again)], budget).expect("apply"));
        assert!(matches!(outcomes[0], Outcome::Statements(_)), "{outcomes:?}");
        assert!(matches!(&outcomes[1], Outcome::Failed(f) if f.message.contains("work budget")), "{outcomes:?}");
        let rows = db.read(&[statement("SELECT x FROM t", vec![])], budget).expect("rows");
        assert_eq!(rows[0].rows, vec![vec![Value::Integer(42)]]);
    }
    assert_eq!(a.checksum().expect("a"), b.checksum().expect("b"));

    let ddl = write(7, 0, vec![statement(&format!("CREATE TABLE u AS {bomb}"), vec![])]);
    let outcome = a.apply(7, &[(0, &ddl)], budget).expect("a DDL bomb fails its request, not the entry");
    assert!(matches!(&outcome[0], Outcome::Failed(f) if f.message.contains("work budget")), "{outcome:?}");

    let big = write(3, 0, vec![statement("INSERT INTO t VALUES (zeroblob(2000001))", vec![])]);
    let outcome = a.apply(8, &[(0, &big)], budget).expect("apply");
    assert!(matches!(&outcome[0], Outcome::Failed(f) if f.message.contains("too big")), "{outcome:?}");
}

#[test]
fn a_ddl_bomb_on_a_fresh_database_fails_only_its_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open("db", dir.path().join("fresh.sqlite")).expect("open");
    let budget = Budget { max_vm_steps: 5_000_000, ..Budget::default() };
    let bomb = "CREATE TABLE t AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c";
    let request = write(1, 0, vec![statement(bomb, vec![])]);
    let outcome = db.apply(1, &[(0, &request)], budget).expect("the entry applies");
    assert!(matches!(&outcome[0], Outcome::Failed(f) if f.message.contains("work budget")), "{outcome:?}");
}

/// An application of the group: every command appends its bytes; the state is what it holds.
#[derive(Default)]
struct Journal(std::sync::Mutex<Vec<u8>>);

impl super::app::Application for Journal {
    fn apply(&self, index: u64, commands: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String> {
        let mut held = self.0.lock().map_err(|e| e.to_string())?;
        let mut replies = Vec::new();
        for command in commands {
            held.extend_from_slice(command);
            replies.push(format!("{index}:{}", held.len()).into_bytes());
        }
        Ok(replies)
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.clone())
    }

    fn restore(&self, image: Option<&[u8]>) -> Result<(), String> {
        *self.0.lock().map_err(|e| e.to_string())? = image.unwrap_or_default().to_vec();
        Ok(())
    }
}

fn with_journal(dir: &std::path::Path) -> (StateMachine, std::sync::Arc<Journal>) {
    let storage = Storage::open(&dir.join("db")).expect("rocksdb");
    let journal = std::sync::Arc::new(Journal::default());
    let mut apps = super::app::Applications::new();
    apps.insert("journal".into(), journal.clone() as std::sync::Arc<dyn super::app::Application>);
    (StateMachine::open(&dir.join("d1"), storage, apps).expect("state machine"), journal)
}

/// Applications get their commands in log order and travel in snapshots; a snapshot made
/// before applications existed still installs (and empties them).
#[tokio::test(flavor = "multi_thread")]
async fn applications_share_the_log_and_its_snapshots() {
    use super::types::{Applied, Command};
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
    let (dir, other_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (mut sm, journal) = with_journal(dir.path());
    let app = |bytes: &[u8]| Command::App { app: "journal".into(), command: bytes.to_vec() };
    assert_eq!(sm.apply_command(1, app(b"ab")).expect("apply"), Applied::App(b"1:2".to_vec()));
    assert_eq!(sm.apply_command(2, app(b"c")).expect("apply"), Applied::App(b"2:3".to_vec()));
    let unknown = sm.apply_command(3, Command::App { app: "nope".into(), command: vec![] }).expect("apply");
    assert!(matches!(unknown, Applied::Refused { .. }), "{unknown:?}");
    // A batch: one entry, one reply per command, in order.
    let batch = Command::Apps { app: "journal".into(), commands: vec![b"d".to_vec(), b"ef".to_vec()] };
    assert_eq!(sm.apply_command(4, batch).expect("apply"), Applied::Apps(vec![b"4:4".to_vec(), b"4:6".to_vec()]));

    let snapshot = sm.build_snapshot().await.expect("snapshot");
    let (mut fresh, fresh_journal) = with_journal(other_dir.path());
    fresh.install_snapshot(&snapshot.meta, snapshot.snapshot).await.expect("install");
    assert_eq!(*fresh_journal.0.lock().expect("lock"), b"abcdef");

    // An image as written before applications: the databases alone.
    let old = postcard::to_allocvec(&(Vec::<(String, Vec<u8>)>::new(),)).expect("encode");
    sm.install_snapshot(&snapshot.meta, Box::new(std::io::Cursor::new(old))).await.expect("install old");
    assert!(journal.0.lock().expect("lock").is_empty());
}
