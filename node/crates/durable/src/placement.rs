//! Where a Durable Object lives: rendezvous (highest-random-weight) hashing over the live
//! members. Each member scores each id; the highest score owns the object and the next two
//! hold replicas of its storage. With the same member list every node agrees, and a member
//! that joins takes over only the ids it now scores highest for (about 1/n of them).

use super::ObjectId;
use sha2::{Digest, Sha256};

/// Copies of an object's storage: the owner and this many successors.
pub const REPLICAS: usize = 3;

fn score(id: &ObjectId, member: &str) -> u64 {
    let hash = Sha256::new().chain_update(id.as_bytes()).chain_update(member.as_bytes()).finalize();
    let mut top = [0u8; 8];
    top.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(top)
}

/// The members that hold `id`, owner first, then its successors (at most [`REPLICAS`]).
pub fn holders<'a>(id: &ObjectId, members: &[&'a str]) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &'a str)> = members.iter().map(|m| (score(id, m), *m)).collect();
    // Ties (vanishingly rare) break by name, so every node still agrees.
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(REPLICAS).map(|(_, m)| m).collect()
}

/// The member that runs `id`, if any member is live (the view's owner is `holders(..)[0]`).
#[cfg(test)]
pub fn owner<'a>(id: &ObjectId, members: &[&'a str]) -> Option<&'a str> {
    holders(id, members).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Namespace;
    use std::collections::HashMap;

    fn ids(n: usize) -> Vec<ObjectId> {
        let ns = Namespace::new("app", "Counter");
        (0..n).map(|i| ns.id_from_name(&format!("object-{i}"))).collect()
    }

    #[test]
    fn every_node_agrees_whatever_order_it_lists_members_in() {
        let a = ["node-1", "node-2", "node-3", "node-4", "node-5"];
        let b = ["node-4", "node-2", "node-5", "node-1", "node-3"];
        for id in ids(200) {
            assert_eq!(holders(&id, &a), holders(&id, &b));
            assert_eq!(holders(&id, &a).len(), REPLICAS);
        }
        assert_eq!(owner(&ids(1)[0], &[]), None);
        assert_eq!(holders(&ids(1)[0], &["node-1"]), vec!["node-1"]);
    }

    #[test]
    fn owners_spread_evenly() {
        let members = ["node-1", "node-2", "node-3", "node-4", "node-5"];
        let mut owned: HashMap<&str, usize> = HashMap::new();
        for id in ids(10_000) {
            *owned.entry(owner(&id, &members).expect("owner")).or_default() += 1;
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
        for id in ids(10_000) {
            let (old, new) = (owner(&id, &before), owner(&id, &after));
            if old != new {
                assert_eq!(new, Some("node-5"), "an object only moves to the new member");
                moved += 1;
            }
        }
        assert!((1_700..=2_300).contains(&moved), "{moved} of 10000 moved; about a fifth should");
    }
}
