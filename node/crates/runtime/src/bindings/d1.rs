//! The `d1` binding: a worker's queries, batches and scripts, run by the node's D1 service.
//!
//! A read without a session has primary semantics (the leader runs it after its read index);
//! a session's reads run on this node's replica at the session's consistency; writes go
//! through the leader. The database a binding names is created on first use if the deployment's
//! creation has not reached this node yet. Errors never trap: SQL and limit errors are
//! `invalid-input`, a missing leader or quorum is `unavailable`.

use super::nimbus::worker::d1::{self as wit, Consistency, QueryResult, Session, Statement};
use super::{BindingError, Host};
use nimbus_d1::{self as d1, D1Error, QueryReply, D1};
use nimbus_proto::manifest::Binding;

/// The one mapping from D1 errors to what a guest sees.
fn binding_error(error: D1Error) -> BindingError {
    if error.is_client_error() {
        BindingError::InvalidInput(error.to_string())
    } else if error.is_retryable() {
        BindingError::Unavailable(error.to_string())
    } else {
        tracing::error!("d1: {error}");
        BindingError::Internal(error.to_string())
    }
}

fn to_statement(statement: Statement) -> d1::Statement {
    let params = statement
        .params
        .into_iter()
        .map(|v| match v {
            wit::Value::Null => d1::Value::Null,
            wit::Value::Integer(i) => d1::Value::Integer(i),
            wit::Value::Real(r) => d1::Value::Real(r),
            wit::Value::Text(t) => d1::Value::Text(t),
            wit::Value::Blob(b) => d1::Value::Blob(b),
        })
        .collect();
    d1::Statement { sql: statement.sql, params }
}

fn to_wit_value(value: d1::Value) -> wit::Value {
    match value {
        d1::Value::Null => wit::Value::Null,
        d1::Value::Integer(i) => wit::Value::Integer(i),
        d1::Value::Real(r) => wit::Value::Real(r),
        d1::Value::Text(t) => wit::Value::Text(t),
        d1::Value::Blob(b) => wit::Value::Blob(b),
    }
}

fn to_results(reply: QueryReply) -> Vec<QueryResult> {
    let bookmark = reply.bookmark.to_string();
    reply
        .results
        .into_iter()
        .map(|r| QueryResult {
            columns: r.columns,
            rows: r.rows.into_iter().map(|row| row.into_iter().map(to_wit_value).collect()).collect(),
            meta: wit::Meta {
                changes: r.changes,
                last_row_id: r.last_row_id,
                duration_ms: r.duration_us as f64 / 1000.0,
                served_by: reply.served_by.clone(),
                served_by_region: reply.served_by_region.clone(),
                served_by_primary: reply.served_by_primary,
            },
            bookmark: Some(bookmark.clone()),
        })
        .collect()
}

impl Host {
    /// The D1 service and database behind a binding.
    fn d1_database(&self, name: &str) -> Result<(D1, String), BindingError> {
        match self.declared.get(name, "d1")? {
            Binding::D1 { database_name, .. } => Ok((self.stores.d1.clone(), database_name.clone())),
            _ => Err(BindingError::UnknownBinding(format!("binding `{name}` is not a D1 binding"))),
        }
    }
}

fn session_args(session: &Session) -> Result<(d1::Consistency, Option<u64>), BindingError> {
    let consistency = match session.consistency {
        Consistency::Primary => d1::Consistency::Primary,
        Consistency::Local => d1::Consistency::Local,
        Consistency::Bookmark => d1::Consistency::Bookmark,
        Consistency::Linearizable => d1::Consistency::Linearizable,
    };
    let bookmark = match &session.bookmark {
        Some(text) => Some(
            text.parse::<u64>().map_err(|_| BindingError::InvalidInput(format!("`{text}` is not a D1 bookmark")))?,
        ),
        None => None,
    };
    Ok((consistency, bookmark))
}

async fn run(
    d1: &D1,
    database: &str,
    statements: Vec<d1::Statement>,
    session: &Session,
) -> Result<Vec<QueryResult>, BindingError> {
    let (consistency, bookmark) = session_args(session)?;
    if !d1.has_database(database) {
        d1.create(database).await.map_err(binding_error)?;
    }
    let reply = d1.query(database, statements, consistency, bookmark).await.map_err(binding_error)?;
    Ok(to_results(reply))
}

impl wit::Host for Host {
    async fn query(
        &mut self,
        binding: String,
        statement: Statement,
        session: Session,
    ) -> Result<QueryResult, BindingError> {
        let (d1, database) = self.d1_database(&binding)?;
        let mut results = run(&d1, &database, vec![to_statement(statement)], &session).await?;
        results.pop().ok_or_else(|| BindingError::Internal("no result".into()))
    }

    async fn batch(
        &mut self,
        binding: String,
        statements: Vec<Statement>,
        session: Session,
    ) -> Result<Vec<QueryResult>, BindingError> {
        let (d1, database) = self.d1_database(&binding)?;
        run(&d1, &database, statements.into_iter().map(to_statement).collect(), &session).await
    }

    async fn exec(&mut self, binding: String, sql: String) -> Result<u32, BindingError> {
        let (d1, database) = self.d1_database(&binding)?;
        if !d1.has_database(&database) {
            d1.create(&database).await.map_err(binding_error)?;
        }
        d1.exec(&database, &sql).await.map(|(count, _)| count).map_err(binding_error)
    }
}
