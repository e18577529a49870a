//! A KV entry as it rides gossip: decoding never panics and what decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nimbus_kv::fuzzing::rumor(data));
