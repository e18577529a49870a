//! Where a Durable Object lives: rendezvous hashing of its id over the live members
//! ([`nimbus_cluster::placement`]). The highest score owns the object and the next two hold
//! replicas of its storage.

use super::ObjectId;

/// Copies of an object's storage: the owner and this many successors.
pub const REPLICAS: usize = 3;

/// The members that hold `id`, owner first, then its successors (at most [`REPLICAS`]).
pub fn holders<'a>(id: &ObjectId, members: &[&'a str]) -> Vec<&'a str> {
    nimbus_cluster::placement::rank(id.as_bytes(), members, REPLICAS)
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
}
