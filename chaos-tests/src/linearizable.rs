//! A linearizability checker for a register, in the manner of Porcupine (Wing & Gong's
//! search with Lowe's memoisation): is there an order of the operations, consistent with
//! real time, in which every read returns the latest write?
//!
//! Histories are split by key first (a register per key; linearizability is compositional).
//! A write whose outcome is unknown may take effect at any point after it started, or never:
//! it gets an open end, so it never forces an order on the others, and a write linearized at
//! the very end changes nothing anyone observed. Reads with unknown outcomes say nothing and
//! are dropped. Failed writes are dropped (they provably did not apply).

use crate::history::{Op, OpKind, Outcome};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOp {
    Write(i64),
    /// Read and what it returned (`None`: the register was never written).
    Read(Option<i64>),
}

/// One operation on one register: when it was called and when it returned (`None`: never
/// observed to return).
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub op: RegisterOp,
    pub start: Duration,
    pub end: Option<Duration>,
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order exists; the reads and writes of the key, for the report.
    Violation(String),
}

/// Checks every key of a D1 register history (`D1Write` and `D1Read` ops).
pub fn check_history(ops: &[Op]) -> BTreeMap<String, Verdict> {
    let mut by_key: BTreeMap<String, Vec<Call>> = BTreeMap::new();
    for op in ops {
        let call = match (op.kind, op.outcome) {
            (OpKind::D1Write, Outcome::Ok) => {
                op.value.map(|v| Call { op: RegisterOp::Write(v), start: op.start, end: Some(op.end) })
            }
            (OpKind::D1Write, Outcome::Unknown) => {
                op.value.map(|v| Call { op: RegisterOp::Write(v), start: op.start, end: None })
            }
            (OpKind::D1Read, Outcome::Ok) => {
                Some(Call { op: RegisterOp::Read(op.result), start: op.start, end: Some(op.end) })
            }
            _ => None,
        };
        if let Some(call) = call {
            by_key.entry(op.key.clone()).or_default().push(call);
        }
    }
    by_key
        .into_iter()
        .map(|(key, calls)| {
            let verdict = check(&calls);
            (key, verdict)
        })
        .collect()
}

/// Checks one register's calls, starting from the absent value.
pub fn check(calls: &[Call]) -> Verdict {
    if search(calls) {
        return Verdict::Linearizable;
    }
    let mut sorted: Vec<&Call> = calls.iter().collect();
    sorted.sort_by_key(|c| c.start);
    let shown: Vec<String> = sorted
        .iter()
        .take(40)
        .map(|c| {
            let end = c.end.map_or("?".to_string(), |e| format!("{:.3}", e.as_secs_f64()));
            match c.op {
                RegisterOp::Write(v) => format!("[{:.3}–{end}] write {v}", c.start.as_secs_f64()),
                RegisterOp::Read(v) => format!("[{:.3}–{end}] read {v:?}", c.start.as_secs_f64()),
            }
        })
        .collect();
    Verdict::Violation(format!("{} operations, no linearization; first: {}", calls.len(), shown.join(", ")))
}

/// One event of the history: a call or a return, in a doubly linked list.
struct Entry {
    call: usize,
    is_return: bool,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

fn search(calls: &[Call]) -> bool {
    // Events sorted by time; at equal times calls come first (they are taken to overlap).
    let mut events: Vec<(Duration, bool, usize)> = Vec::with_capacity(calls.len() * 2);
    for (i, c) in calls.iter().enumerate() {
        events.push((c.start, false, i));
        events.push((c.end.unwrap_or(Duration::MAX), true, i));
    }
    events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    // Node 0 is the head sentinel; event k is node k + 1.
    let mut list: Vec<Entry> = Vec::with_capacity(events.len() + 1);
    list.push(Entry { call: NIL, is_return: false, prev: NIL, next: if events.is_empty() { NIL } else { 1 } });
    let mut return_of = vec![NIL; calls.len()];
    for (k, (_, is_return, call)) in events.iter().enumerate() {
        let node = k + 1;
        list.push(Entry {
            call: *call,
            is_return: *is_return,
            prev: k,
            next: if node == events.len() { NIL } else { node + 1 },
        });
        if *is_return {
            return_of[*call] = node;
        }
    }
    let unlink = |list: &mut Vec<Entry>, node: usize| {
        let (prev, next) = (list[node].prev, list[node].next);
        list[prev].next = next;
        if next != NIL {
            list[next].prev = prev;
        }
    };
    let relink = |list: &mut Vec<Entry>, node: usize| {
        let (prev, next) = (list[node].prev, list[node].next);
        list[prev].next = node;
        if next != NIL {
            list[next].prev = node;
        }
    };

    let words = calls.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state: Option<i64> = None;
    let mut seen: HashSet<(Vec<u64>, Option<i64>)> = HashSet::new();
    // (call node, state before it) of each call linearized so far.
    let mut stack: Vec<(usize, Option<i64>)> = Vec::new();
    let mut cursor = list[0].next;
    while list[0].next != NIL {
        if cursor != NIL && !list[cursor].is_return {
            let call = list[cursor].call;
            let next_state = match calls[call].op {
                RegisterOp::Write(v) => Some(Some(v)),
                RegisterOp::Read(v) if v == state => Some(state),
                RegisterOp::Read(_) => None,
            };
            if let Some(next_state) = next_state {
                let mut after = linearized.clone();
                after[call / 64] |= 1 << (call % 64);
                if seen.insert((after.clone(), next_state)) {
                    stack.push((cursor, state));
                    state = next_state;
                    linearized = after;
                    unlink(&mut list, return_of[call]);
                    unlink(&mut list, cursor);
                    cursor = list[0].next;
                    continue;
                }
            }
            cursor = list[cursor].next;
        } else {
            // A return whose call is not linearized yet (or the end, with only open-ended
            // calls passed over): some earlier choice was wrong.
            let Some((node, before)) = stack.pop() else { return false };
            let call = list[node].call;
            state = before;
            linearized[call / 64] &= !(1 << (call % 64));
            relink(&mut list, return_of[call]);
            relink(&mut list, node);
            cursor = list[node].next;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn w(v: i64, start: u64, end: u64) -> Call {
        Call { op: RegisterOp::Write(v), start: ms(start), end: Some(ms(end)) }
    }

    fn r(v: Option<i64>, start: u64, end: u64) -> Call {
        Call { op: RegisterOp::Read(v), start: ms(start), end: Some(ms(end)) }
    }

    #[test]
    fn sequential_and_overlapping_histories_pass() {
        assert_eq!(check(&[w(1, 0, 10), r(Some(1), 20, 30), w(2, 40, 50), r(Some(2), 60, 70)]), Verdict::Linearizable);
        // The read overlaps the write: either value is fine.
        assert_eq!(check(&[w(1, 0, 10), w(2, 20, 50), r(Some(1), 30, 40)]), Verdict::Linearizable);
        assert_eq!(check(&[w(1, 0, 10), w(2, 20, 50), r(Some(2), 30, 40)]), Verdict::Linearizable);
        assert_eq!(check(&[r(None, 0, 5), w(1, 10, 20)]), Verdict::Linearizable);
        assert_eq!(check(&[]), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_is_caught() {
        // Write 2 finished before the read began, yet the read saw 1.
        let verdict = check(&[w(1, 0, 10), w(2, 20, 30), r(Some(1), 40, 50)]);
        assert!(matches!(verdict, Verdict::Violation(_)), "{verdict:?}");
        // A value never written.
        assert!(matches!(check(&[w(1, 0, 10), r(Some(7), 20, 30)]), Verdict::Violation(_)));
        // A lost write: read absent after an acknowledged write.
        assert!(matches!(check(&[w(1, 0, 10), r(None, 20, 30)]), Verdict::Violation(_)));
        // Two reads that see the writes in opposite orders.
        let verdict = check(&[w(1, 0, 100), w(2, 0, 100), r(Some(1), 10, 20), r(Some(2), 30, 40), r(Some(1), 50, 60)]);
        assert!(matches!(verdict, Verdict::Violation(_)), "{verdict:?}");
    }

    #[test]
    fn an_unknown_write_may_apply_late_or_never() {
        let unknown = Call { op: RegisterOp::Write(5), start: ms(0), end: None };
        assert_eq!(check(&[unknown, r(None, 10, 20)]), Verdict::Linearizable);
        assert_eq!(check(&[unknown, r(None, 10, 20), r(Some(5), 30, 40)]), Verdict::Linearizable);
        // Once seen, it cannot be unseen.
        let verdict = check(&[unknown, r(Some(5), 10, 20), r(None, 30, 40)]);
        assert!(matches!(verdict, Verdict::Violation(_)), "{verdict:?}");
    }

    #[test]
    fn a_long_history_is_checked_quickly() {
        // 600 operations, many overlapping: the memoised search must not blow up.
        let mut calls = Vec::new();
        for i in 0..300u64 {
            calls.push(w(i as i64, i * 10, i * 10 + 25));
            calls.push(r(Some(i as i64), i * 10 + 26, i * 10 + 30));
        }
        assert_eq!(check(&calls), Verdict::Linearizable);
    }
}
