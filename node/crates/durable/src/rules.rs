//! The ownership protocol's decisions, as pure functions of what a node holds and what it
//! is told: the owner's actor ([`super::object`]) and a holder ([`super::replica`]) act on
//! them, and the model check (`model.rs`) explores every interleaving of them.
//!
//! The protocol is single-decree Paxos run once per epoch, with the object's copy as the
//! value:
//! - an [`Epoch`] `(term, node)` is a ballot: one activation by one node, never reused, since
//!   a holder promises only an epoch newer than every one it has promised ([`admits_promise`])
//!   and a new epoch needs promises from a quorum ([`quorum`]);
//! - a copy's [`Version`] is `(epoch, seq)`: the epoch whose owner wrote it last and how many
//!   writes the object has had. Within one epoch one owner writes, so two copies at the same
//!   version hold the same data; across epochs the newer epoch wins ([`newest`]), because
//!   its owner started from the newest copy a quorum held, which has every acknowledged write
//!   (see `Actor::activate`);
//! - a holder skips a step only within its own lineage (the same epoch, a seq it has), and
//!   otherwise applies steps only from exactly the version it holds ([`plan_steps`]); an
//!   install never moves a copy to an older version ([`install_replaces`]).

use super::wire::{Epoch, Step, Version};

/// A holder promises `epoch` only if it is newer than every epoch it has promised: an
/// epoch activates at most once, so no two owners ever write under the same one.
pub fn admits_promise(promised: &Epoch, epoch: &Epoch) -> bool {
    epoch > promised
}

/// A holder accepts writes of `epoch` unless it has promised a newer one (a newer epoch is
/// taken as the promise: its owner reached a quorum without this holder).
pub fn admits_writes(promised: &Epoch, epoch: &Epoch) -> bool {
    epoch >= promised
}

/// Promises a new epoch needs, this node's own included, among `known` members (down
/// ones too) when its writes go to `holders` copies: a majority, and enough that every
/// quorum meets every earlier epoch's holders (`p + w > n`).
pub fn quorum(known: usize, holders: usize) -> usize {
    (known / 2 + 1).max((known + 1).saturating_sub(holders))
}

/// The term of this node's next epoch: above every term its copy has seen.
pub fn next_term(promised: &Epoch, held: &Version) -> u64 {
    promised.term.max(held.epoch.term) + 1
}

/// What a holder at `held` does with a batch of steps that ends at `head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPlan {
    /// Apply the steps from this index on (those before it are already here); the copy is
    /// then at `head`.
    ApplyFrom(usize),
    /// The steps do not start where this copy is (it is behind, or of another lineage).
    NeedSnapshot,
}

pub fn plan_steps(held: &Version, steps: &[Step], head: &Version) -> StepPlan {
    // A retried batch, or one a snapshot already covered: only steps of this copy's own
    // epoch can be already here.
    let skip = steps.iter().take_while(|step| step.version.epoch == held.epoch && step.version.seq <= held.seq).count();
    let start = steps.get(skip).map(|step| &step.base);
    match start {
        Some(base) if base == held => StepPlan::ApplyFrom(skip),
        Some(_) => StepPlan::NeedSnapshot,
        // Nothing left to apply: the copy must already be at the head (an empty batch only
        // confirms that a holder is up to date).
        None if same_or_ahead_in_lineage(held, head) => StepPlan::ApplyFrom(steps.len()),
        None => StepPlan::NeedSnapshot,
    }
}

/// True when a copy at `held` has everything of `head`: the same epoch, at least its seq.
fn same_or_ahead_in_lineage(held: &Version, head: &Version) -> bool {
    held.epoch == head.epoch && held.seq >= head.seq
}

/// True when a snapshot at `offered` should replace a copy at `held`: never backwards.
/// (A holder has promised no epoch above the offering owner's, so `held` is of an older
/// epoch, or of the same one and then an older or newer seq of the same lineage.)
pub fn install_replaces(held: &Version, offered: &Version) -> bool {
    offered > held
}

/// The newest of the copies a quorum reported: the highest version. Versions are unique
/// per content (see the module header), so ties are the same copy wherever it is.
pub fn newest<'a, T>(copies: impl IntoIterator<Item = (T, &'a Version)>) -> Option<(T, &'a Version)> {
    copies.into_iter().fold(None, |best, (holder, version)| match best {
        Some((_, top)) if top >= version => best,
        _ => Some((holder, version)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(term: u64, node: &str) -> Epoch {
        Epoch { term, node: node.into() }
    }

    fn v(term: u64, node: &str, seq: u64) -> Version {
        Version { epoch: epoch(term, node), seq }
    }

    fn step(base: Version, version: Version) -> Step {
        Step { base, version, writes: Vec::new() }
    }

    #[test]
    fn an_epoch_is_promised_once() {
        assert!(admits_promise(&epoch(1, "a"), &epoch(2, "a")));
        assert!(admits_promise(&epoch(2, "a"), &epoch(2, "b")), "the node breaks a tie of terms");
        assert!(!admits_promise(&epoch(2, "b"), &epoch(2, "b")), "the same epoch twice: two activations");
        assert!(!admits_promise(&epoch(3, "a"), &epoch(2, "b")));
        assert!(admits_writes(&epoch(2, "b"), &epoch(2, "b")));
        assert!(!admits_writes(&epoch(3, "a"), &epoch(2, "b")));
    }

    #[test]
    fn quorums_meet_every_earlier_write_set() {
        for known in 1..=7 {
            for holders in 1..=3.min(known) {
                let p = quorum(known, holders);
                assert!(p * 2 > known, "{p} of {known} is a majority");
                assert!(p + holders > known, "{p} promisers meet {holders} holders among {known}");
            }
        }
        assert_eq!(quorum(3, 3), 2);
        assert_eq!(quorum(5, 3), 3);
        assert_eq!(quorum(1, 1), 1, "a node that knows only itself");
    }

    #[test]
    fn a_same_term_from_another_node_is_another_lineage() {
        let held = v(5, "a", 2);
        // b took term 5 too, from a's first write, and wrote its own second one.
        let steps = [step(v(5, "a", 1), v(5, "b", 1)), step(v(5, "b", 1), v(5, "b", 2))];
        assert_eq!(plan_steps(&held, &steps, &v(5, "b", 2)), StepPlan::NeedSnapshot);
        assert!(v(5, "b", 1) > v(5, "a", 2), "b's epoch is newer, whatever the seqs");
    }

    #[test]
    fn steps_already_here_are_skipped_only_within_the_lineage() {
        let steps = [step(v(4, "a", 1), v(4, "a", 2)), step(v(4, "a", 2), v(4, "a", 3))];
        assert_eq!(plan_steps(&v(4, "a", 1), &steps, &v(4, "a", 3)), StepPlan::ApplyFrom(0));
        assert_eq!(plan_steps(&v(4, "a", 2), &steps, &v(4, "a", 3)), StepPlan::ApplyFrom(1), "a retried batch");
        assert_eq!(plan_steps(&v(4, "a", 3), &steps, &v(4, "a", 3)), StepPlan::ApplyFrom(2));
        assert_eq!(plan_steps(&v(4, "a", 0), &steps, &v(4, "a", 3)), StepPlan::NeedSnapshot, "behind");
        assert_eq!(plan_steps(&v(3, "c", 2), &steps, &v(4, "a", 3)), StepPlan::NeedSnapshot, "another lineage");
        // An empty batch confirms only a holder that is at the head.
        assert_eq!(plan_steps(&v(4, "a", 3), &[], &v(4, "a", 3)), StepPlan::ApplyFrom(0));
        assert_eq!(plan_steps(&v(4, "a", 2), &[], &v(4, "a", 3)), StepPlan::NeedSnapshot);
        assert_eq!(plan_steps(&v(3, "c", 9), &[], &v(4, "a", 3)), StepPlan::NeedSnapshot);
        // The step an activation takes from the newest copy to its own epoch.
        let rebase = [step(v(3, "c", 9), v(4, "a", 9))];
        assert_eq!(plan_steps(&v(3, "c", 9), &rebase, &v(4, "a", 9)), StepPlan::ApplyFrom(0));
    }

    #[test]
    fn a_higher_epoch_wins_whatever_its_seq_and_an_install_never_goes_back() {
        // a's copy at seq 9 includes writes it never had acknowledged; b activated later from
        // a quorum's newest copy (seq 4) and acknowledged its own writes from there.
        assert_eq!(newest([(1, &v(2, "a", 9)), (2, &v(3, "b", 4))]).map(|(h, _)| h), Some(2));
        assert!(install_replaces(&v(2, "a", 9), &v(3, "b", 4)));
        assert!(!install_replaces(&v(3, "b", 7), &v(3, "b", 4)), "a late install of the same owner");
        assert!(!install_replaces(&v(3, "b", 4), &v(3, "b", 4)));
    }

    #[test]
    fn the_newest_copy_does_not_depend_on_who_answered_first() {
        let copies = [v(5, "a", 2), v(5, "b", 2), v(4, "c", 7)];
        let forward = newest(copies.iter().enumerate()).map(|(_, v)| v.clone());
        let backward = newest(copies.iter().enumerate().rev()).map(|(_, v)| v.clone());
        assert_eq!(forward, Some(v(5, "b", 2)));
        assert_eq!(forward, backward);
    }
}
