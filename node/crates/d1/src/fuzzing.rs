//! Entry points for the fuzz targets in `fuzz/`, compiled only under `cargo fuzz` (which sets
//! `--cfg fuzzing`): the `D1Peer` wire decoders, and a real SQLite replica that applies
//! writes the way the state machine does.

use crate::forward::{PrimaryRead, Proposal};
use crate::sqlite::{Budget, Database};
use crate::state_machine::SnapshotImage;
use crate::types::{Outcome, Statement, TypeConfig, WriteKind, WriteRequest};
use std::path::Path;

/// Decodes `payload` as every message the `D1Peer` service takes, and checks what a
/// proposal or a forwarded read carries as the leader does before it runs.
pub fn peer_message(payload: &[u8]) {
    let _ = postcard::from_bytes::<openraft::raft::AppendEntriesRequest<TypeConfig>>(payload);
    let _ = postcard::from_bytes::<openraft::raft::VoteRequest<u64>>(payload);
    let _ = postcard::from_bytes::<openraft::raft::InstallSnapshotRequest<TypeConfig>>(payload);
    let _ = postcard::from_bytes::<SnapshotImage>(payload);
    match postcard::from_bytes::<Proposal>(payload) {
        Ok(Proposal::Write(request)) => {
            if let WriteKind::Statements(statements) = &request.kind {
                let _ = crate::check_request(&request.database, statements);
            }
        }
        Ok(Proposal::Create(name)) => {
            let _ = crate::validate_name(&name);
        }
        // An application's command is decoded and checked by the application, in the
        // state machine.
        Ok(Proposal::App { .. }) | Err(_) => {}
    }
    if let Ok(read) = postcard::from_bytes::<PrimaryRead>(payload) {
        let _ = crate::check_request(&read.database, &read.statements);
    }
}

/// One replica's database, written as log entries are applied.
pub struct Replica {
    database: Database,
    index: u64,
    budget: Budget,
}

impl Replica {
    /// Opens `fuzz.sqlite` in `dir`; statements run with `max_vm_steps` each.
    pub fn open(dir: &Path, max_vm_steps: u64) -> Replica {
        let path = dir.join("fuzz.0.sqlite");
        crate::sqlite::remove_files(&path);
        let database = Database::open("fuzz", path).expect("the database opens");
        Replica { database, index: 0, budget: Budget { max_vm_steps, ..Budget::default() } }
    }

    /// Applies `statements` (checked as a client's are) as the next log entry, and reads them
    /// if they only read. The user's SQL may fail its own request, never the entry: an error
    /// from `apply` would stop the node's Raft group.
    pub fn run(&mut self, statements: Vec<Statement>) {
        if crate::check_request("fuzz", &statements).is_err() {
            return;
        }
        if self.database.reads_only(&statements).unwrap_or(false) {
            let _ = self.database.read(&statements, self.budget);
        }
        self.index += 1;
        let request = WriteRequest {
            id: u128::from(self.index),
            database: "fuzz".into(),
            time_ms: 1_700_000_000_000,
            kind: WriteKind::Statements(statements),
        };
        let outcomes = match self.database.apply(self.index, &[(0, &request)], self.budget) {
            Ok(outcomes) => outcomes,
            Err(e) => panic!("a request's SQL failed the log entry: {e}"),
        };
        assert_eq!(outcomes.len(), 1);
        assert!(!matches!(outcomes[0], Outcome::UnknownDatabase));
        assert_eq!(self.database.applied_index().expect("applied index"), self.index, "the entry was not recorded");
    }
}
