//! `nimbus d1`: create and list databases, run SQL, and an interactive shell, through any
//! node's REST API. Writes go to the leader; a read has primary semantics unless it asks
//! for a replica (`--consistency local|bookmark|linearizable`); the shell is a session.

use crate::node::Node;
use crate::output::{bytes, table, Style};
use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use nimbus_api::d1::{Created, Databases, Executed, QueryReply, SqlValue};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum D1Command {
    /// Create a database (no-op when it exists).
    Create { name: String },
    /// List databases with their size on the node asked.
    List,
    /// Run one SQL statement (`--command`) or a `;`-separated script (`--file`).
    Execute {
        database: String,
        #[arg(long, short = 'c', conflicts_with = "file", required_unless_present = "file")]
        command: Option<String>,
        #[arg(long, conflicts_with = "command")]
        file: Option<PathBuf>,
        /// Positional parameters for `?1`, `?2` … (JSON values; anything else binds as text).
        #[arg(long = "param")]
        params: Vec<String>,
        /// How to read: `primary` (the leader, after its read index; D1's default) or this
        /// node's replica (`local`, `bookmark`, `linearizable`).
        #[arg(long, value_enum, default_value_t = Consistency::Primary)]
        consistency: Consistency,
        /// Read at least the state this bookmark names (implies `--consistency bookmark`).
        #[arg(long)]
        bookmark: Option<String>,
    },
    /// An interactive SQL shell with a session: each read sees at least the shell's last write.
    Shell {
        database: String,
        #[arg(long, value_enum, default_value_t = Consistency::Bookmark)]
        consistency: Consistency,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Consistency {
    Primary,
    Local,
    Bookmark,
    Linearizable,
}

impl Consistency {
    fn as_str(self) -> &'static str {
        match self {
            Consistency::Primary => "primary",
            Consistency::Local => "local",
            Consistency::Bookmark => "bookmark",
            Consistency::Linearizable => "linearizable",
        }
    }
}

fn param(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn cell(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => "NULL".into(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(r) => serde_json::to_string(r).unwrap_or_else(|_| r.to_string()),
        SqlValue::Text(s) => s.clone(),
        SqlValue::Blob { blob } => format!("x'{blob}'"),
    }
}

/// Prints each statement's rows as a table, then one line of meta.
fn print_reply(reply: &QueryReply, style: &Style) {
    for result in &reply.results {
        let columns: Vec<&str> = result.columns.iter().map(String::as_str).collect();
        let rows: Vec<Vec<String>> = result.rows.iter().map(|row| row.iter().map(cell).collect()).collect();
        if !columns.is_empty() {
            table(style, &columns, &rows);
        }
        let meta = &result.meta;
        println!(
            "{}",
            style.dim(&format!(
                "{} row(s), {} change(s), last row id {}, {:.3} ms on {}",
                rows.len(),
                meta.changes,
                meta.last_row_id,
                meta.duration_ms,
                meta.served_by
            ))
        );
    }
    let mut tail = format!("bookmark {}", reply.bookmark);
    if let Some(ms) = reply.staleness_ms {
        tail.push_str(&format!(", replica last confirmed fresh {ms} ms ago"));
    }
    println!("{}", style.dim(&tail));
}

pub async fn run(command: D1Command, target: (String, String), json_out: bool, style: &Style) -> Result<()> {
    let node = Node::new(target, Duration::from_secs(120))?;
    match command {
        D1Command::Create { name } => {
            let reply: Created = node.call_as(reqwest::Method::PUT, &format!("/v1/d1/databases/{name}"), None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else if reply.created {
                println!("{} created database {name}", style.ok("✓"));
            } else {
                println!("database {name} already exists");
            }
        }
        D1Command::List => {
            let reply: Databases = node.call_as(reqwest::Method::GET, "/v1/d1/databases", None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&reply)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = reply
                .databases
                .iter()
                .map(|d| vec![d.name.clone(), bytes(d.size_bytes), d.applied_index.to_string()])
                .collect();
            if rows.is_empty() {
                println!("No databases yet: create one with `nimbus d1 create <name>`.");
            } else {
                table(style, &["NAME", "SIZE", "LAST WRITE INDEX"], &rows);
            }
        }
        D1Command::Execute { database, command, file, params, consistency, bookmark } => match (command, file) {
            (Some(sql), _) => {
                let consistency = if bookmark.is_some() { Consistency::Bookmark } else { consistency };
                let body = json!({
                    "sql": sql,
                    "params": params.iter().map(|p| param(p)).collect::<Vec<_>>(),
                    "consistency": consistency.as_str(),
                    "bookmark": bookmark,
                });
                let reply: QueryReply =
                    node.call_as(reqwest::Method::POST, &format!("/v1/d1/{database}/query"), Some(&body)).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&reply)?);
                } else {
                    print_reply(&reply, style);
                }
            }
            (None, Some(path)) => {
                let sql = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                let body = json!({ "sql": sql });
                let reply: Executed =
                    node.call_as(reqwest::Method::POST, &format!("/v1/d1/{database}/exec"), Some(&body)).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&reply)?);
                } else {
                    println!("{} ran {} statement(s); bookmark {}", style.ok("✓"), reply.count, reply.bookmark);
                }
            }
            (None, None) => bail!("give --command or --file"),
        },
        D1Command::Shell { database, consistency } => shell(&node, &database, consistency, json_out, style).await?,
    }
    Ok(())
}

/// Reads statements ending in `;` and runs each; the session's bookmark follows every reply,
/// so with `bookmark` consistency the shell always reads its own writes on any node.
async fn shell(node: &Node, database: &str, consistency: Consistency, json_out: bool, style: &Style) -> Result<()> {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        println!("nimbus d1 shell on {database} ({}); end statements with `;`, `.quit` to leave", consistency.as_str());
    }
    let mut bookmark: Option<String> = None;
    let mut pending = String::new();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("{}", if pending.is_empty() { "d1> " } else { "..> " });
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed == ".quit" || trimmed == ".exit") {
            break;
        }
        if pending.is_empty() && trimmed == ".tables" {
            pending = "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name;".into();
        } else {
            pending.push_str(&line);
            pending.push('\n');
        }
        if !pending.trim_end().ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut pending);
        let body = json!({ "sql": sql.trim(), "consistency": consistency.as_str(), "bookmark": bookmark });
        let reply: Result<QueryReply> =
            node.call_as(reqwest::Method::POST, &format!("/v1/d1/{database}/query"), Some(&body)).await;
        match reply {
            Ok(reply) => {
                bookmark = Some(reply.bookmark.clone());
                if json_out {
                    println!("{}", serde_json::to_string(&reply)?);
                } else {
                    print_reply(&reply, style);
                }
            }
            Err(e) => eprintln!("{} {e:#}", style.bad("error:")),
        }
    }
    Ok(())
}
