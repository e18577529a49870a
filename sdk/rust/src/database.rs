//! D1 the way Cloudflare's Workers API shapes it: `prepare(sql).bind(..)` then `first`,
//! `all`, `run` or `raw`; `batch` (all or nothing); `exec`; and sessions that carry a
//! bookmark so every read sees at least the session's last write, on any node.
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

/// A database bound to the worker as `binding`.
pub struct D1Database {
    binding: String,
    session: RefCell<Session>,
}

impl D1Database {
    /// Reads the local replica as it is (D1's default, no session).
    pub fn new(binding: &str) -> Self {
        D1Database { binding: binding.into(), session: RefCell::new(Session { consistency: Consistency::Local, bookmark: None }) }
    }

    /// A session: reads wait until this node's replica has applied `bookmark` (from an earlier
    /// reply, e.g. a client's header) and then every bookmark a reply in the session returns.
    pub fn with_session(&self, bookmark: Option<&str>) -> D1Database {
        let session = Session { consistency: Consistency::Bookmark, bookmark: bookmark.map(str::to_string) };
        D1Database { binding: self.binding.clone(), session: RefCell::new(session) }
    }

    /// Every read goes through the leader's read index: it sees every acknowledged write.
    pub fn linearizable(&self) -> D1Database {
        let session = Session { consistency: Consistency::Linearizable, bookmark: None };
        D1Database { binding: self.binding.clone(), session: RefCell::new(session) }
    }

    /// The latest bookmark this session has seen.
    pub fn bookmark(&self) -> Option<String> {
        self.session.borrow().bookmark.clone()
    }

    pub fn prepare(&self, sql: &str) -> PreparedStatement<'_> {
        PreparedStatement { db: self, statement: Statement { sql: sql.into(), params: Vec::new() } }
    }

    /// Runs the statements as one atomic write (or one consistent read).
    pub fn batch(&self, statements: &[PreparedStatement<'_>]) -> Result<Vec<QueryResult>, BindingError> {
        let list: Vec<Statement> = statements.iter().map(|s| s.statement.clone()).collect();
        let session = self.session.borrow().clone();
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
        let session = self.session.borrow().clone();
        let result = d1::query(&self.binding, statement, &session)?;
        if let Some(bookmark) = result.bookmark.clone() {
            self.advance(bookmark);
        }
        Ok(result)
    }

    fn advance(&self, bookmark: String) {
        let mut session = self.session.borrow_mut();
        let newer = match &session.bookmark {
            Some(old) => bookmark.parse::<u64>().ok() > old.parse::<u64>().ok(),
            None => true,
        };
        if newer {
            session.bookmark = Some(bookmark);
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
