//! D1 the way Cloudflare's Workers API shapes it: `prepare(sql).bind(..)` then `first`,
//! `all`, `run` or `raw`; `batch` (all or nothing); `exec`; and sessions.
//!
//! Without a session every query has primary semantics: the leader runs it after confirming
//! it leads, so it sees every write acknowledged before, whichever node took it. A session
//! (`with_session`) may read the nearest replica instead and carries a bookmark, so every
//! query in it sees at least what the previous ones saw, on any node.
//!
//! ```ignore
//! let db = nimbus::D1Database::new("DB");
//! let session = db.with_session(request.header("x-d1-bookmark"));
//! session.prepare("INSERT INTO notes (body) VALUES (?1)").bind([text.into()]).run()?;
//! let notes = session.prepare("SELECT id, body FROM notes").all()?;
//! let bookmark = session.bookmark(); // hand it back to the client
//! ```

use crate::d1::{self, Consistency, QueryResult, Session, Statement, Value};
use crate::BindingError;
use std::cell::RefCell;

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

/// A database bound to the worker as `binding`, with or without a session.
pub struct D1Database {
    binding: String,
    /// How the next query reads.
    level: RefCell<Session>,
    /// A session advances `level` to the bookmark of every reply; without one every query
    /// keeps primary semantics.
    in_session: bool,
    /// The newest bookmark a reply carried.
    latest: RefCell<Option<String>>,
}

impl D1Database {
    /// No session: every query has primary semantics (Cloudflare's default).
    pub fn new(binding: &str) -> Self {
        D1Database::at(binding, Consistency::Primary, None, false)
    }

    fn at(binding: &str, consistency: Consistency, bookmark: Option<String>, in_session: bool) -> Self {
        D1Database {
            binding: binding.into(),
            latest: RefCell::new(bookmark.clone()),
            level: RefCell::new(Session { consistency, bookmark }),
            in_session,
        }
    }

    /// A session, as `withSession` opens one: `None` or `"first-unconstrained"` lets the first
    /// query read this node's replica as it is, `"first-primary"` gives it primary semantics,
    /// a bookmark (from an earlier reply, e.g. a client's header) makes it see at least that
    /// state. Every later query sees at least what the previous ones saw.
    pub fn with_session(&self, constraint: Option<&str>) -> D1Database {
        match constraint {
            None | Some("first-unconstrained") => D1Database::at(&self.binding, Consistency::Local, None, true),
            Some("first-primary") => D1Database::at(&self.binding, Consistency::Primary, None, true),
            Some(bookmark) => D1Database::at(&self.binding, Consistency::Bookmark, Some(bookmark.to_string()), true),
        }
    }

    /// Every read on this node's replica after the leader's read index: primary semantics
    /// without shipping the rows, for the price of waiting for the replica to apply it.
    pub fn linearizable(&self) -> D1Database {
        D1Database::at(&self.binding, Consistency::Linearizable, None, false)
    }

    /// The newest bookmark a reply has carried (a session's is where it stands).
    pub fn bookmark(&self) -> Option<String> {
        self.latest.borrow().clone()
    }

    pub fn prepare(&self, sql: &str) -> PreparedStatement<'_> {
        PreparedStatement { db: self, statement: Statement { sql: sql.into(), params: Vec::new() } }
    }

    /// Runs the statements as one atomic write (or one consistent read).
    pub fn batch(&self, statements: &[PreparedStatement<'_>]) -> Result<Vec<QueryResult>, BindingError> {
        let list: Vec<Statement> = statements.iter().map(|s| s.statement.clone()).collect();
        let session = self.level.borrow().clone();
        let results = d1::batch(&self.binding, &list, &session)?;
        if let Some(bookmark) = results.last().and_then(|r| r.bookmark.clone()) {
            self.advance(bookmark);
        }
        Ok(results)
    }

    /// Runs a `;`-separated script without parameters (migrations); the statement count.
    pub fn exec(&self, sql: &str) -> Result<u32, BindingError> {
        d1::exec(&self.binding, sql)
    }

    fn query(&self, statement: &Statement) -> Result<QueryResult, BindingError> {
        let session = self.level.borrow().clone();
        let result = d1::query(&self.binding, statement, &session)?;
        if let Some(bookmark) = result.bookmark.clone() {
            self.advance(bookmark);
        }
        Ok(result)
    }

    fn advance(&self, bookmark: String) {
        let mut latest = self.latest.borrow_mut();
        let newer = match latest.as_deref() {
            Some(old) => bookmark.parse::<u64>().ok() > old.parse::<u64>().ok(),
            None => true,
        };
        if newer {
            *latest = Some(bookmark);
        }
        if self.in_session {
            *self.level.borrow_mut() = Session { consistency: Consistency::Bookmark, bookmark: latest.clone() };
        }
    }
}

/// A statement with its bound parameters.
pub struct PreparedStatement<'a> {
    db: &'a D1Database,
    statement: Statement,
}

/// One row as (column, value) pairs.
pub type Row = Vec<(String, Value)>;

impl<'a> PreparedStatement<'a> {
    pub fn bind(mut self, params: impl IntoIterator<Item = Value>) -> Self {
        self.statement.params = params.into_iter().collect();
        self
    }

    /// The first row, if any.
    pub fn first(&self) -> Result<Option<Row>, BindingError> {
        Ok(self.all()?.into_iter().next())
    }

    /// Every row, with column names.
    pub fn all(&self) -> Result<Vec<Row>, BindingError> {
        let result = self.db.query(&self.statement)?;
        let columns = result.columns;
        Ok(result.rows.into_iter().map(|row| columns.iter().cloned().zip(row).collect()).collect())
    }

    /// Runs the statement for its effect: rows changed, last row id, where it ran.
    pub fn run(&self) -> Result<d1::Meta, BindingError> {
        Ok(self.db.query(&self.statement)?.meta)
    }

    /// Rows as arrays of values, without column names.
    pub fn raw(&self) -> Result<Vec<Vec<Value>>, BindingError> {
        Ok(self.db.query(&self.statement)?.rows)
    }
}
