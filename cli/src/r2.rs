//! `nimbus r2`: buckets, objects and S3 access keys, through any node's management API.
//!
//! Objects stream both ways (a file is never read whole), with a progress line on a
//! terminal for large ones. Access keys are for S3 clients (`aws --endpoint-url`, boto3):
//! the secret is printed once, when the key is created.

use crate::node::Node;
use crate::output::{bytes, table, Progress, Style};
use anyhow::{Context, Result};
use clap::Subcommand;
use nimbus_api::r2::{AccessKeyCreated, AccessKeys, Buckets, ObjectInfo, ObjectPage};
use reqwest::Method;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum R2Command {
    /// Create, list or delete buckets.
    Bucket {
        #[command(subcommand)]
        command: BucketCommand,
    },
    /// Put, get, list or delete objects.
    Object {
        #[command(subcommand)]
        command: ObjectCommand,
    },
    /// S3 access keys: create (the secret is shown once), list, delete.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
pub enum BucketCommand {
    Create {
        name: String,
    },
    List,
    /// Delete an empty bucket.
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ObjectCommand {
    /// Upload a file (`-` for stdin) as `<bucket>/<key>`.
    Put {
        /// `<bucket>/<key>`.
        path: String,
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Download `<bucket>/<key>` to a file (default: stdout).
    Get {
        path: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List a bucket's objects by prefix (one page, or every page with --all).
    List {
        bucket: String,
        #[arg(long, default_value = "")]
        prefix: String,
        /// Roll keys up to this delimiter into prefixes (`/` for folders).
        #[arg(long)]
        delimiter: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        all: bool,
    },
    Delete {
        path: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an access key for S3 clients; its secret is shown this once.
    Create {
        name: String,
    },
    List,
    Delete {
        id: String,
    },
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn split(path: &str) -> Result<(&str, &str)> {
    path.split_once('/')
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .ok_or_else(|| anyhow::anyhow!("`{path}`: expected <bucket>/<key>"))
}

fn object_path(path: &str) -> Result<String> {
    let (bucket, key) = split(path)?;
    Ok(format!("/v1/r2/buckets/{}/objects/{}", encode(bucket), encode(key)))
}

pub async fn run(command: R2Command, target: (String, String), json_out: bool, style: &Style) -> Result<()> {
    let node = Node::new(target, Duration::from_secs(24 * 3600))?;
    match command {
        R2Command::Bucket { command } => bucket(&node, command, json_out, style).await,
        R2Command::Object { command } => object(&node, command, json_out, style).await,
        R2Command::Keys { command } => keys(&node, command, json_out, style).await,
    }
}

async fn bucket(node: &Node, command: BucketCommand, json_out: bool, style: &Style) -> Result<()> {
    match command {
        BucketCommand::Create { name } => {
            node.call(Method::POST, "/v1/r2/buckets", Some(&serde_json::json!({ "name": name }))).await?;
            println!("{} bucket {name}", style.ok("created"));
        }
        BucketCommand::List => {
            let reply: Buckets = node.json_as(Method::GET, "/v1/r2/buckets", &[], vec![]).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else if reply.buckets.is_empty() {
                println!("No buckets yet: `nimbus r2 bucket create <name>`.");
            } else {
                let rows: Vec<Vec<String>> = reply
                    .buckets
                    .iter()
                    .map(|b| vec![b.name.clone(), crate::output::ago(b.created_ms as i64)])
                    .collect();
                table(style, &["NAME", "CREATED"], &rows);
            }
        }
        BucketCommand::Delete { name } => {
            node.send(Method::DELETE, &format!("/v1/r2/buckets/{}", encode(&name)), &[], vec![]).await?;
            println!("{} bucket {name}", style.ok("deleted"));
        }
    }
    Ok(())
}

async fn object(node: &Node, command: ObjectCommand, json_out: bool, style: &Style) -> Result<()> {
    match command {
        ObjectCommand::Put { path, file, content_type } => {
            type Reader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;
            let (reader, total): (Reader, Option<u64>) = if file.as_os_str() == "-" {
                (Box::pin(tokio::io::stdin()), None)
            } else {
                let opened =
                    tokio::fs::File::open(&file).await.with_context(|| format!("opening {}", file.display()))?;
                let size = opened.metadata().await?.len();
                (Box::pin(opened), Some(size))
            };
            let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress::new(total)));
            let counting = {
                let progress = progress.clone();
                futures::TryStreamExt::map_ok(tokio_util::io::ReaderStream::new(reader), move |chunk| {
                    progress.lock().unwrap_or_else(|p| p.into_inner()).add(chunk.len() as u64);
                    chunk
                })
            };
            let counting = reqwest::Body::wrap_stream(counting);
            let info: ObjectInfo =
                node.stream_json(Method::PUT, &object_path(&path)?, counting, total, content_type).await?;
            progress.lock().unwrap_or_else(|p| p.into_inner()).finish();
            if json_out {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("{} {path} ({}, etag {})", style.ok("uploaded"), bytes(info.size), info.etag);
            }
        }
        ObjectCommand::Get { path, output } => {
            let mut response = node.send(Method::GET, &object_path(&path)?, &[], vec![]).await?;
            let mut progress = Progress::new(response.content_length());
            let mut sink: Box<dyn Write> = match &output {
                Some(file) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?,
                )),
                None => {
                    progress.on = false;
                    Box::new(std::io::stdout().lock())
                }
            };
            while let Some(chunk) = response.chunk().await? {
                sink.write_all(&chunk)?;
                progress.add(chunk.len() as u64);
            }
            sink.flush()?;
            progress.finish();
            if let Some(file) = output {
                eprintln!("{} {path} → {} ({})", style.ok("downloaded"), file.display(), bytes(progress.done));
            }
        }
        ObjectCommand::List { bucket, prefix, delimiter, limit, cursor, all } => {
            let mut cursor = cursor;
            let mut pages = Vec::new();
            loop {
                let mut query = vec![("prefix", prefix.clone()), ("limit", limit.to_string())];
                if let Some(delimiter) = &delimiter {
                    query.push(("delimiter", delimiter.clone()));
                }
                if let Some(cursor) = &cursor {
                    query.push(("cursor", cursor.clone()));
                }
                let page: ObjectPage = node
                    .json_as(Method::GET, &format!("/v1/r2/buckets/{}/objects", encode(&bucket)), &query, vec![])
                    .await?;
                cursor = page.cursor.clone();
                let more = page.truncated;
                pages.push(page);
                if !(all && more) {
                    break;
                }
            }
            if json_out {
                println!("{}", serde_json::to_string_pretty(&pages)?);
                return Ok(());
            }
            let mut rows = Vec::new();
            for page in &pages {
                for prefix in &page.delimited_prefixes {
                    rows.push(vec![prefix.clone(), "-".into(), "".into(), "".into()]);
                }
                for o in &page.objects {
                    rows.push(vec![
                        o.key.clone(),
                        bytes(o.size),
                        o.etag.clone(),
                        crate::output::ago(o.uploaded_ms as i64),
                    ]);
                }
            }
            table(style, &["KEY", "SIZE", "ETAG", "UPLOADED"], &rows);
            if let Some(cursor) = pages.last().and_then(|p| p.cursor.as_ref()) {
                println!("{}", style.dim(&format!("more: --cursor {cursor} (or --all)")));
            }
        }
        ObjectCommand::Delete { path } => {
            node.send(Method::DELETE, &object_path(&path)?, &[], vec![]).await?;
            println!("{} {path}", style.ok("deleted"));
        }
    }
    Ok(())
}

async fn keys(node: &Node, command: KeysCommand, json_out: bool, style: &Style) -> Result<()> {
    match command {
        KeysCommand::Create { name } => {
            let body = serde_json::json!({ "name": name });
            let created: AccessKeyCreated = node.call_as(Method::POST, "/v1/r2/keys", Some(&body)).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&created)?);
                return Ok(());
            }
            println!("{} access key {} ({})", style.ok("✓"), style.bold(&created.access_key_id), created.name);
            println!("aws_access_key_id     = {}", created.access_key_id);
            println!("aws_secret_access_key = {}", created.secret_access_key);
            println!("{}", style.dim("The secret is not shown again. Region: auto."));
        }
        KeysCommand::List => {
            let reply: AccessKeys = node.json_as(Method::GET, "/v1/r2/keys", &[], vec![]).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                let rows: Vec<Vec<String>> = reply
                    .keys
                    .iter()
                    .map(|k| vec![k.access_key_id.clone(), k.name.clone(), crate::output::ago(k.created_ms as i64)])
                    .collect();
                table(style, &["ACCESS KEY ID", "NAME", "CREATED"], &rows);
            }
        }
        KeysCommand::Delete { id } => {
            node.send(Method::DELETE, &format!("/v1/r2/keys/{}", encode(&id)), &[], vec![]).await?;
            println!("{} access key {id}", style.ok("deleted"));
        }
    }
    Ok(())
}
