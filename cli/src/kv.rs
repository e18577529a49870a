//! `nimbus kv`: namespaces, and get / put / delete / list of keys, through any node's REST
//! API (every node holds a full replica; a write spreads from the node it reached).

use crate::node::Node;
use crate::output::{table, Style};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use nimbus_api::kv::{Declared, ListPage, Namespaces, Written};
use reqwest::Method;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum KvCommand {
    /// Declare or list namespaces.
    Namespace {
        #[command(subcommand)]
        command: NamespaceCommand,
    },
    /// Print a key's value (raw bytes) to stdout.
    Get {
        namespace: String,
        key: String,
        /// Also print metadata and expiration (on stderr, or in the JSON with --json).
        #[arg(long)]
        metadata: bool,
    },
    /// Write a value, given inline or read from a file (`-` for stdin).
    Put {
        namespace: String,
        key: String,
        value: Option<String>,
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
        /// Seconds until the key expires (at least 60).
        #[arg(long)]
        ttl: Option<u64>,
        /// Unix time at which the key expires.
        #[arg(long, conflicts_with = "ttl")]
        expiration: Option<u64>,
        /// JSON metadata (≤ 1 KiB).
        #[arg(long)]
        metadata: Option<String>,
    },
    Delete {
        namespace: String,
        key: String,
    },
    /// List keys by prefix, one page (or every page with --all).
    List {
        namespace: String,
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
pub enum NamespaceCommand {
    /// Declare a namespace (no-op when it exists).
    Create {
        id: String,
        #[arg(long)]
        title: Option<String>,
    },
    List,
}

/// Percent-encodes a key for the URL path (a key may hold `/`, `?`, spaces …).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub async fn run(command: KvCommand, target: (String, String), json_out: bool, style: &Style) -> Result<()> {
    let node = Node::new(target, Duration::from_secs(300))?;
    match command {
        KvCommand::Namespace { command: NamespaceCommand::Create { id, title } } => {
            let body = serde_json::to_vec(&serde_json::json!({ "title": title }))?;
            let reply: Declared =
                node.json_as(Method::PUT, &format!("/v1/kv/namespaces/{}", encode_key(&id)), &[], body).await?;
            if json_out {
                println!("{}", serde_json::to_string(&reply)?);
            } else if reply.created {
                println!("{} namespace {id}", style.ok("created"));
            } else {
                println!("namespace {id} already exists");
            }
        }
        KvCommand::Namespace { command: NamespaceCommand::List } => {
            let reply: Namespaces = node.json_as(Method::GET, "/v1/kv/namespaces", &[], vec![]).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&reply)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = reply.namespaces.iter().map(|n| vec![n.id.clone(), n.title.clone()]).collect();
            if rows.is_empty() {
                println!("No namespaces yet: `nimbus kv namespace create <id>`.");
            } else {
                table(style, &["ID", "TITLE"], &rows);
            }
        }
        KvCommand::Get { namespace, key, metadata } => {
            let path = format!("/v1/kv/{}/values/{}", encode_key(&namespace), encode_key(&key));
            let resp = node.send(Method::GET, &path, &[], vec![]).await?;
            let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let (meta, expiration) = (header("x-nimbus-metadata"), header("x-nimbus-expiration"));
            let value = resp.bytes().await?;
            if json_out {
                let text = std::str::from_utf8(&value).ok();
                let reply = serde_json::json!({
                    "key": key,
                    "value": text,
                    "value_base64": if text.is_none() { Some(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &value)) } else { None },
                    "metadata": meta.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
                    "expiration": expiration.and_then(|e| e.parse::<u64>().ok()),
                });
                println!("{reply}");
                return Ok(());
            }
            std::io::stdout().write_all(&value)?;
            if metadata {
                eprintln!("{} {}", style.dim("metadata:"), meta.as_deref().unwrap_or("none"));
                eprintln!("{} {}", style.dim("expiration:"), expiration.as_deref().unwrap_or("none"));
            }
        }
        KvCommand::Put { namespace, key, value, file, ttl, expiration, metadata } => {
            let body = match (value, file) {
                (Some(value), _) => value.into_bytes(),
                (None, Some(path)) if path.as_os_str() == "-" => {
                    let mut buf = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                    buf
                }
                (None, Some(path)) => std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                (None, None) => bail!("give a value, or --file PATH (`-` for stdin)"),
            };
            let mut query = Vec::new();
            if let Some(ttl) = ttl {
                query.push(("expiration_ttl", ttl.to_string()));
            }
            if let Some(at) = expiration {
                query.push(("expiration", at.to_string()));
            }
            if let Some(metadata) = metadata {
                query.push(("metadata", metadata));
            }
            let size = body.len();
            let path = format!("/v1/kv/{}/values/{}", encode_key(&namespace), encode_key(&key));
            let reply: Written = node.json_as(Method::PUT, &path, &query, body).await?;
            if json_out {
                println!("{}", serde_json::to_string(&reply)?);
            } else {
                println!("{} {key} ({} in {namespace})", style.ok("wrote"), crate::output::bytes(size as u64));
            }
        }
        KvCommand::Delete { namespace, key } => {
            let path = format!("/v1/kv/{}/values/{}", encode_key(&namespace), encode_key(&key));
            let reply: Written = node.json_as(Method::DELETE, &path, &[], vec![]).await?;
            if json_out {
                println!("{}", serde_json::to_string(&reply)?);
            } else {
                println!("{} {key}", style.ok("deleted"));
            }
        }
        KvCommand::List { namespace, prefix, limit, cursor, all } => {
            let path = format!("/v1/kv/{}/keys", encode_key(&namespace));
            let mut keys = Vec::new();
            let mut cursor = cursor;
            let next = loop {
                let mut query = vec![("prefix", prefix.clone()), ("limit", limit.to_string())];
                if let Some(c) = &cursor {
                    query.push(("cursor", c.clone()));
                }
                let page: ListPage = node.json_as(Method::GET, &path, &query, vec![]).await?;
                keys.extend(page.keys);
                let next = page.cursor;
                if !all || page.list_complete || next.is_none() {
                    break next;
                }
                cursor = next;
            };
            if json_out {
                println!("{}", serde_json::json!({ "keys": keys, "cursor": next, "list_complete": next.is_none() }));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.name.clone(),
                        k.expiration.map(|e| e.to_string()).unwrap_or_default(),
                        k.metadata.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No keys.");
            } else {
                table(style, &["KEY", "EXPIRES", "METADATA"], &rows);
            }
            if let Some(next) = next {
                println!("{}", style.dim(&format!("more keys: --cursor {next} (or --all)")));
            }
        }
    }
    Ok(())
}
