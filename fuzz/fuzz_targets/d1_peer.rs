//! The `D1Peer` service's messages (Raft's append, vote and snapshot, proposals, forwarded
//! reads, snapshot images): decoding and the leader's checks never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nimbus_d1::fuzzing::peer_message(data));
