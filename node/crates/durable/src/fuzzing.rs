//! Entry points for the fuzz targets in `fuzz/`, compiled only under `cargo fuzz` (which sets
//! `--cfg fuzzing`): the `DurablePeer` wire decoders.

use crate::wire::Request;
use crate::{Frame, Namespace, ObjectId};

/// Decodes `payload` as every message the `DurablePeer` service takes or streams, and reads
/// the names in it as the service does.
pub fn peer_message(payload: &[u8]) {
    if let Ok(request) = postcard::from_bytes::<Request>(payload) {
        if let Request::Event { namespace, id, .. } = &request {
            if let Ok(namespace) = Namespace::parse(namespace) {
                assert!(!namespace.worker().is_empty() && !namespace.class_name().is_empty());
                // An id is checked against its namespace's tag; a forged one is refused.
                let id = ObjectId::from_bytes(*id);
                if let Ok(checked) = namespace.id_from_string(&id.to_string()) {
                    assert_eq!(checked, id);
                }
            }
        }
        let again = postcard::to_allocvec(&request).expect("a decoded request encodes");
        assert!(postcard::from_bytes::<Request>(&again).is_ok(), "a request changed on a round trip");
    }
    let _ = postcard::from_bytes::<Frame>(payload);
    if let Ok(text) = std::str::from_utf8(payload) {
        if let Some((namespace, id)) = text.split_once('/') {
            if let Ok(namespace) = Namespace::parse(namespace) {
                let _ = namespace.id_from_string(id);
            }
        }
    }
}
