//! The `DurablePeer` service's messages and WebSocket frames: decoding never panics, ids
//! are checked against their namespace.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nimbus_durable::fuzzing::peer_message(data));
