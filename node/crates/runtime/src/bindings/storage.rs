//! The `storage` binding: a Durable Object's own storage, from inside its instance.
//!
//! Only an instance of a class has an object; elsewhere every call is `unavailable`. Writes
//! join the running event's steps and are released with its outcome (the output gate).

use super::durable::binding_error;
use super::nimbus::worker::storage::{self as wit, StorageWrite};
use super::{BindingError, Host};
use nimbus_durable::ObjectContext;
use nimbus_durable::{ListOptions, Write};

impl Host {
    /// The object behind this instance's `storage` and `websocket` calls.
    pub(super) fn object(&self) -> Result<&ObjectContext, BindingError> {
        self.object
            .as_ref()
            .ok_or_else(|| BindingError::Unavailable("storage is only available inside a Durable Object".into()))
    }
}

impl wit::Host for Host {
    async fn get(&mut self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, BindingError> {
        self.object()?.get(&keys).map_err(binding_error)
    }

    async fn list(&mut self, options: wit::ListOptions) -> Result<Vec<(String, Vec<u8>)>, BindingError> {
        let options = ListOptions {
            start: options.start,
            end: options.end,
            prefix: options.prefix,
            reverse: options.reverse,
            limit: options.limit.map(|l| l as usize),
        };
        self.object()?.list(&options).map_err(binding_error)
    }

    async fn write(&mut self, writes: Vec<StorageWrite>) -> Result<(), BindingError> {
        let writes = writes
            .into_iter()
            .map(|w| match w {
                StorageWrite::Put((key, value)) => Write::Put { key, value },
                StorageWrite::Delete(key) => Write::Delete { key },
            })
            .collect();
        self.object()?.write(writes).map_err(binding_error)
    }

    async fn delete_all(&mut self) -> Result<(), BindingError> {
        self.object()?.write(vec![Write::DeleteAll]).map_err(binding_error)
    }

    async fn get_alarm(&mut self) -> Result<Option<i64>, BindingError> {
        self.object()?.alarm().map_err(binding_error)
    }

    async fn set_alarm(&mut self, scheduled_ms: Option<i64>) -> Result<(), BindingError> {
        self.object()?.write(vec![Write::SetAlarm(scheduled_ms)]).map_err(binding_error)
    }
}
