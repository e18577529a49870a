use super::log_store::LogStore;
use super::sqlite::Database;
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
        let sm = StateMachine::open(&dir.path().join("d1"), storage)?;
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
    db.apply(index, &refs).expect("apply")
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
    let _ = a.apply(2, &[(0, &warm)]).expect("warm up");
    let outcomes_a = apply(&a, 3, &noisy);
    let outcomes_b = apply(&b, 3, &noisy);
    assert_eq!(without_durations(&outcomes_a), without_durations(&outcomes_b), "the same results on both replicas");
    assert_eq!(outcomes_a.len(), 2);
    for outcome in &outcomes_a {
        assert!(matches!(outcome, Outcome::Statements(_)), "{outcome:?}");
    }
    let table =
        |db: &Database| db.read(&[statement("SELECT * FROM t ORDER BY id", vec![])]).expect("read")[0].rows.clone();
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
    let count =
        |db: &Database| db.read(&[statement("SELECT count(*) FROM t", vec![])]).expect("count")[0].rows[0][0].clone();
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
