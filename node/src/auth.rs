//! Management tokens on a node: who may call the management API, and with which scopes.
//!
//! Two sources: the admin hashes of the node's configuration (`management.admin_token_sha256`,
//! so a fresh node accepts the cluster's bootstrap token before it has reached the control
//! plane) and the set the control plane pushes on the watch stream. The pushed set replaces
//! the previous one whole and is persisted with the watch sequence that carried it, so a node
//! restarted without the control plane still knows every token, and a revoked one stays
//! revoked. Only SHA-256 hashes are held; [`Tokens::grants`] hashes the presented secret and
//! looks it up. Scopes are decided by `nimbus_proto::auth`, as on the control plane.

use nimbus_proto::auth::{self, Grants};
use nimbus_proto::deploy::TokenSet;
use nimbus_storage::{Batch, Storage, CF_META};
use nimbus_util::config::ManagementConfig;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

const TOKENS_KEY: &[u8] = b"management_tokens";

/// One token as persisted (never the secret).
#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    sha256: String,
    scopes: Vec<String>,
}

/// The tokens this node accepts; cheap to clone.
#[derive(Clone)]
pub struct Tokens {
    configured: Arc<HashMap<String, Grants>>,
    pushed: Arc<RwLock<HashMap<String, Grants>>>,
}

impl Tokens {
    /// The configured admin hashes and the set persisted by an earlier run. A configured
    /// value that is not a SHA-256 hex digest is an error, not a token nobody can present.
    pub fn load(config: &ManagementConfig, storage: &Storage) -> Result<Self, String> {
        let mut configured = HashMap::new();
        for hash in &config.admin_token_sha256 {
            let hash = hash.trim().to_ascii_lowercase();
            if !auth::is_token_hash(&hash) {
                return Err(format!("management.admin_token_sha256: `{hash}` is not a SHA-256 digest (64 hex digits)"));
            }
            configured.insert(hash, Grants::admin());
        }
        let tokens = Tokens { configured: Arc::new(configured), pushed: Arc::default() };
        let persisted = storage.get(CF_META, TOKENS_KEY).map_err(|e| e.to_string())?;
        if let Some(bytes) = persisted {
            match serde_json::from_slice::<Vec<Stored>>(&bytes) {
                Ok(stored) => tokens.install(stored),
                Err(e) => tracing::error!("persisted management tokens are unreadable, ignored: {e}"),
            }
        }
        Ok(tokens)
    }

    /// Adds the persisting of `set` to `batch`; call [`Tokens::apply`] once it is written.
    pub fn persist(set: &TokenSet, batch: &mut Batch) {
        let stored: Vec<Stored> = set
            .tokens
            .iter()
            .map(|t| Stored { id: t.id.clone(), sha256: t.sha256.clone(), scopes: t.scopes.clone() })
            .collect();
        // Strings and vectors of strings always serialise.
        let bytes = serde_json::to_vec(&stored).unwrap_or_else(|_| b"[]".to_vec());
        batch.put(CF_META, TOKENS_KEY, bytes);
    }

    /// Replaces the pushed set.
    pub fn apply(&self, set: &TokenSet) {
        let stored = set
            .tokens
            .iter()
            .map(|t| Stored { id: t.id.clone(), sha256: t.sha256.clone(), scopes: t.scopes.clone() })
            .collect();
        self.install(stored);
    }

    fn install(&self, stored: Vec<Stored>) {
        let mut pushed = HashMap::with_capacity(stored.len());
        for token in stored {
            // A token with a scope this node does not know is skipped whole rather than
            // granted part of what it was meant to carry.
            match Grants::parse(&token.scopes) {
                Ok(grants) if auth::is_token_hash(&token.sha256) => {
                    pushed.insert(token.sha256, grants);
                }
                Ok(_) => tracing::warn!(id = %token.id, "management token with a malformed hash, skipped"),
                Err(e) => tracing::warn!(id = %token.id, "management token skipped: {e}"),
            }
        }
        let count = pushed.len();
        match self.pushed.write() {
            Ok(mut guard) => *guard = pushed,
            Err(poisoned) => *poisoned.into_inner() = pushed,
        }
        tracing::debug!(count, "management tokens replaced");
    }

    /// The scopes of the token whose secret is `secret`, if this node knows it.
    pub fn grants(&self, secret: &str) -> Option<Grants> {
        let hash = auth::token_hash(secret);
        if let Some(grants) = self.configured.get(&hash) {
            return Some(grants.clone());
        }
        let pushed = match self.pushed.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        pushed.get(&hash).cloned()
    }
}
