//! `nimbus tokens`: management API tokens, kept by the control plane and pushed to every node.
//!
//! A token's secret is printed once, when it is created; the cluster stores only its hash.

use crate::client;
use crate::output::{self, table, Style};
use anyhow::Result;
use clap::Subcommand;
use nimbus_api::control::{CreateToken, CreatedToken, TokenInfo};

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create a token; its secret is shown this once.
    Create {
        /// A label for people (`ci`, `grafana`).
        name: String,
        /// `admin`, or `<product>:read|edit` with product one of kv, d1, r2, queues,
        /// workers, cluster (edit implies read); repeatable or comma-separated.
        #[arg(long = "scope", short, required = true, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// Every token (never its secret).
    List,
    /// Revoke a token by id: every node refuses it once the control plane has told it.
    Revoke { id: String },
}

pub async fn run(client: &client::Client, command: &TokensCommand, json_out: bool, style: &Style) -> Result<()> {
    match command {
        TokensCommand::Create { name, scopes } => {
            let body = serde_json::to_value(CreateToken { name: name.clone(), scopes: scopes.clone() })?;
            let created: CreatedToken = client.call_as(reqwest::Method::POST, "/v1/tokens", Some(&body)).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&created)?);
                return Ok(());
            }
            println!(
                "{} token {} created ({}): {}",
                style.ok("✓"),
                style.bold(&created.info.name),
                created.info.id,
                created.info.scopes.join(", ")
            );
            println!("{}", created.token);
            println!("{}", style.dim("This secret is not shown again; only its hash is stored."));
        }
        TokensCommand::List => {
            let tokens: Vec<TokenInfo> = client.call_as(reqwest::Method::GET, "/v1/tokens", None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
                return Ok(());
            }
            if tokens.is_empty() {
                println!("No tokens besides the cluster's bootstrap token.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| vec![t.id.clone(), t.name.clone(), t.scopes.join(","), output::ago(t.created_at)])
                .collect();
            table(style, &["ID", "NAME", "SCOPES", "CREATED"], &rows);
        }
        TokensCommand::Revoke { id } => {
            client.call(reqwest::Method::DELETE, &format!("/v1/tokens/{id}"), None).await?;
            if json_out {
                println!("{}", serde_json::json!({ "revoked": id }));
            } else {
                println!("{} token {id} revoked", style.ok("✓"));
            }
        }
    }
    Ok(())
}
