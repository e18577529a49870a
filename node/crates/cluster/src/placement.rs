//! Where a key lives: rendezvous (highest-random-weight) hashing over the live members. Each
//! member scores each key; the highest scores hold it. With the same member list every node
//! agrees, whatever order it lists them in, and a member that joins takes over only the keys
//! it now scores highest for (about 1/n of them). Durable Objects place objects with it, R2
//! places chunks.

use sha2::{Digest, Sha256};

fn score(key: &[u8], member: &str) -> u64 {
    let hash = Sha256::new().chain_update(key).chain_update(member.as_bytes()).finalize();
    let mut top = [0u8; 8];
    top.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(top)
}

/// The `n` members that hold `key`, highest score first (fewer when fewer members are live).
pub fn rank<'a>(key: &[u8], members: &[&'a str], n: usize) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &'a str)> = members.iter().map(|m| (score(key, m), *m)).collect();
    // Ties (vanishingly rare) break by name, so every node still agrees.
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(n).map(|(_, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| Sha256::digest(format!("key-{i}")).to_vec()).collect()
    }

    fn owner<'a>(key: &[u8], members: &[&'a str]) -> Option<&'a str> {
        rank(key, members, 1).into_iter().next()
    }

    #[test]
    fn every_node_agrees_whatever_order_it_lists_members_in() {
        let a = ["node-1", "node-2", "node-3", "node-4", "node-5"];
        let b = ["node-4", "node-2", "node-5", "node-1", "node-3"];
        for key in keys(200) {
            assert_eq!(rank(&key, &a, 3), rank(&key, &b, 3));
            assert_eq!(rank(&key, &a, 3).len(), 3);
        }
        assert_eq!(owner(&keys(1)[0], &[]), None);
        assert_eq!(rank(&keys(1)[0], &["node-1", "node-1"], 3), vec!["node-1"]);
    }

    #[test]
    fn owners_spread_evenly() {
        let members = ["node-1", "node-2", "node-3", "node-4", "node-5"];
        let mut owned: HashMap<&str, usize> = HashMap::new();
        for key in keys(10_000) {
            *owned.entry(owner(&key, &members).expect("owner")).or_default() += 1;
        }
        for member in members {
            let share = owned[member];
            assert!((1_700..=2_300).contains(&share), "{member} owns {share} of 10000");
        }
    }

    #[test]
    fn a_joining_member_takes_only_what_it_now_owns() {
        let before = ["node-1", "node-2", "node-3", "node-4"];
        let after = ["node-1", "node-2", "node-3", "node-4", "node-5"];
        let mut moved = 0;
        for key in keys(10_000) {
            let (old, new) = (owner(&key, &before), owner(&key, &after));
            if old != new {
                assert_eq!(new, Some("node-5"), "a key only moves to the new member");
                moved += 1;
            }
        }
        assert!((1_700..=2_300).contains(&moved), "{moved} of 10000 moved; about a fifth should");
    }
}
