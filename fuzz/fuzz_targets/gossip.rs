//! A gossip datagram from anyone: the keyring refuses whatever was not sealed with a cluster
//! key, and what it seals opens to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_cluster::keyring::Keyring;
use std::sync::OnceLock;

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| Keyring::new(&[Keyring::generate(), Keyring::generate()]).expect("keys"))
}

fuzz_target!(|data: &[u8]| {
    let keyring = keyring();
    assert!(keyring.open(data).is_err(), "a datagram the fuzzer made up opened");
    let sealed = keyring.seal(data);
    assert_eq!(keyring.open(&sealed).expect("a sealed datagram opens"), data);
});
