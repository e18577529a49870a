//! The `durable-objects` binding: ids and stubs for the classes a worker binds.
//!
//! A binding names a class of the worker's own deployment; its ids belong to that class's
//! namespace, so an id from another namespace is `invalid-input`. A stub's `fetch` reaches the
//! object's owner from any node ([`nimbus_durable::Durable::call`]).

use super::nimbus::worker::durable_objects::{self as wit, HttpRequest, HttpResponse};
use super::{BindingError, Declared, Host};
use nimbus_durable::{DurableError, Namespace};
use nimbus_durable::{Event, EventOutcome, HttpMessage};
use nimbus_proto::manifest::Binding;

/// The one mapping from Durable Object errors to what a guest sees (stubs and storage).
pub(super) fn binding_error(error: DurableError) -> BindingError {
    match error {
        e if e.is_client_error() => BindingError::InvalidInput(e.to_string()),
        e @ (DurableError::Unavailable(_) | DurableError::NotOwner | DurableError::Fenced(_)) => {
            BindingError::Unavailable(e.to_string())
        }
        e => BindingError::Internal(e.to_string()),
    }
}

impl Declared {
    /// The namespace behind a Durable Object binding: the class of this worker it names.
    fn durable_namespace(&self, name: &str) -> Result<Namespace, BindingError> {
        match self.get(name, "durable_object")? {
            Binding::DurableObject { class_name, .. } => Ok(Namespace::new(&self.worker, class_name)),
            _ => Err(BindingError::UnknownBinding(format!("binding `{name}` is not a Durable Object binding"))),
        }
    }
}

impl wit::Host for Host {
    async fn id_from_name(&mut self, binding: String, name: String) -> Result<String, BindingError> {
        Ok(self.declared.durable_namespace(&binding)?.id_from_name(&name).to_string())
    }

    async fn new_unique_id(&mut self, binding: String) -> Result<String, BindingError> {
        Ok(self.declared.durable_namespace(&binding)?.new_unique_id().to_string())
    }

    async fn id_from_string(&mut self, binding: String, id: String) -> Result<String, BindingError> {
        let namespace = self.declared.durable_namespace(&binding)?;
        namespace.id_from_string(&id).map(|id| id.to_string()).map_err(|e| BindingError::InvalidInput(e.to_string()))
    }

    async fn fetch(&mut self, binding: String, id: String, request: HttpRequest) -> Result<HttpResponse, BindingError> {
        let namespace = self.declared.durable_namespace(&binding)?;
        let id = namespace.id_from_string(&id).map_err(binding_error)?;
        let message = HttpMessage {
            method: request.method,
            url: request.url,
            status: 0,
            headers: request.headers,
            body: request.body,
        };
        let durable = self.stores.durable.clone();
        match durable.call(&namespace, id, Event::Fetch(message)).await.map_err(binding_error)? {
            EventOutcome::Response(response) => {
                Ok(HttpResponse { status: response.status, headers: response.headers, body: response.body })
            }
            other => Err(BindingError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_object_ids_come_from_the_bound_class() {
        let declared = Declared::new(
            "app".into(),
            vec![Binding::DurableObject { name: "COUNTER".into(), class_name: "Counter".into() }].into(),
        );
        let namespace = declared.durable_namespace("COUNTER").expect("bound");
        let id = namespace.id_from_name("room").to_string();
        assert_eq!(id, Namespace::new("app", "Counter").id_from_name("room").to_string());
        assert_eq!(namespace.id_from_string(&id).map(|id| id.to_string()).expect("valid"), id);
        assert!(namespace.id_from_string("nope").is_err());
        assert!(matches!(declared.durable_namespace("NOPE"), Err(BindingError::UnknownBinding(_))));
    }
}
