//! The `kv` binding: get / put / delete / list on the node's KV replica.
//!
//! A write applies locally (fsync off the async threads) and spreads by gossip; a read sees
//! this node's replica. Cloudflare's limits are the store's: a key, value or metadata over
//! them is `invalid-input`.

use super::nimbus::worker::kv as wit;
use super::{BindingError, Host};
use nimbus_kv::{KvError, KvStore};
use nimbus_proto::manifest::Binding;

/// The one mapping from KV errors to what a guest sees.
fn binding_error(error: KvError) -> BindingError {
    if error.is_client_error() {
        BindingError::InvalidInput(error.to_string())
    } else {
        tracing::error!("kv: {error}");
        BindingError::Internal(error.to_string())
    }
}

/// Runs a store call that may fsync off the async threads.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, KvError> + Send + 'static,
) -> Result<T, BindingError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(binding_error),
        Err(e) => Err(BindingError::Internal(format!("kv task failed: {e}"))),
    }
}

impl Host {
    /// The store and namespace behind a KV binding.
    fn kv_namespace(&self, name: &str) -> Result<(KvStore, String), BindingError> {
        match self.declared.get(name, "kv")? {
            Binding::Kv { namespace_id, .. } => Ok((self.stores.kv.clone(), namespace_id.clone())),
            _ => Err(BindingError::UnknownBinding(format!("binding `{name}` is not a KV binding"))),
        }
    }
}

impl wit::Host for Host {
    async fn get(&mut self, binding: String, key: String) -> Result<Option<wit::Entry>, BindingError> {
        let (store, namespace) = self.kv_namespace(&binding)?;
        let entry = store.get(&namespace, &key).map_err(binding_error)?;
        Ok(entry.map(|e| wit::Entry {
            value: e.value.unwrap_or_default(),
            metadata: e.metadata,
            expiration: e.expiration,
        }))
    }

    async fn put(
        &mut self,
        binding: String,
        key: String,
        value: Vec<u8>,
        options: wit::PutOptions,
    ) -> Result<(), BindingError> {
        let (store, namespace) = self.kv_namespace(&binding)?;
        let options = nimbus_kv::PutOptions {
            expiration: options.expiration,
            expiration_ttl: options.expiration_ttl,
            metadata: options.metadata,
        };
        blocking(move || store.put(&namespace, &key, value, options).map(|_| ())).await
    }

    async fn delete(&mut self, binding: String, key: String) -> Result<(), BindingError> {
        let (store, namespace) = self.kv_namespace(&binding)?;
        blocking(move || store.delete(&namespace, &key).map(|_| ())).await
    }

    async fn list(&mut self, binding: String, options: wit::ListOptions) -> Result<wit::ListResult, BindingError> {
        let (store, namespace) = self.kv_namespace(&binding)?;
        let limit = options.limit.map_or(nimbus_kv::MAX_LIST_LIMIT, |l| l as usize);
        let prefix = options.prefix.unwrap_or_default();
        let page = store.list(&namespace, &prefix, limit, options.cursor.as_deref()).map_err(binding_error)?;
        Ok(wit::ListResult {
            keys: page
                .keys
                .into_iter()
                .map(|k| wit::KeyInfo { name: k.name, expiration: k.expiration, metadata: k.metadata })
                .collect(),
            list_complete: page.list_complete,
            cursor: page.cursor,
        })
    }
}
