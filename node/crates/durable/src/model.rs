//! A model check of the ownership protocol (stateright, exhaustive breadth-first search).
//!
//! Three nodes hold one counter object. Any ready node may decide it owns the object (views
//! disagree during membership changes, so the model lets every node try) and activates it:
//! it promises itself a new epoch, asks the others, and once a quorum has promised it takes
//! the newest copy among them. An owner runs increments one at a time; each is applied to
//! its own copy and released only when every holder of its epoch has accepted it. The
//! network reorders messages and loses them (a message may stay undelivered forever: for
//! the invariants, which are about node states, that is the same as a loss, and it keeps
//! the search smaller than an explicit drop); nodes crash (losing everything but their RocksDB
//! copy) and restart, up to [`Bounds::crashes`] times; a restarted node owns nothing until
//! its first membership view is published. Every decision a node takes is made by the same
//! functions the node runs ([`super::rules`]).
//!
//! Invariants, checked in every reachable state:
//! - no two acknowledged increments observe the same state (they answer distinct values);
//! - every acknowledged write is in the state of every later epoch (an activation starts
//!   from a copy at least as new as every value acknowledged before it).
//!
//! `startup_window: true` brings back the bug this check was written for: a restarted node
//! that has not yet published its first view counts itself a majority of one.
//!
//! The state is kept compact (an epoch is two bytes) so the search runs millions of states
//! a minute; every rule call converts to the node's own [`Epoch`] and [`Version`].
//!
//! Simplifications, each argued: a promise reply carries the holder's copy (the node pulls
//! the same copy right after, and a holder that promised refuses older epochs in between);
//! an owner replicates one increment per message (batches only merge steps); the real
//! node's retries after a timeout are one resend per increment and a give-up that drops
//! the ownership.

use super::rules::{self, StepPlan};
use super::wire::{Epoch, Step, Version};
use stateright::{Model, Property};

const NODES: usize = 3;

fn name(node: usize) -> String {
    format!("n{}", node + 1)
}

/// An [`Epoch`] in two bytes: `node` is the node's index plus one (0: no epoch yet), so the
/// derived order is the real one (`""` < `"n1"` < `"n2"` < `"n3"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct E {
    term: u8,
    node: u8,
}

impl E {
    fn of(term: u64, node: usize) -> E {
        E { term: term.min(u8::MAX as u64) as u8, node: node as u8 + 1 }
    }

    fn real(self) -> Epoch {
        match self.node {
            0 => Epoch { term: self.term.into(), node: String::new() },
            n => Epoch { term: self.term.into(), node: name(n as usize - 1) },
        }
    }
}

impl std::fmt::Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.real())
    }
}

/// A [`Version`] in three bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct V {
    epoch: E,
    seq: u8,
}

impl V {
    fn real(self) -> Version {
        Version { epoch: self.epoch.real(), seq: self.seq.into() }
    }
}

/// How far the search goes.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub crashes: u8,
    pub activations: u8,
    pub increments: u8,
    pub resends: u8,
    /// Bring back the startup window (a booting node counts itself a majority of one).
    pub startup_window: bool,
}

/// What survives a crash: the node's RocksDB copy of the object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Held {
    promised: E,
    version: V,
    value: u8,
}

/// One step of the object's history, as the model sends it (`value` is the counter after
/// it; `None` for an activation's step to its own epoch).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ModelStep {
    base: V,
    version: V,
    value: Option<u8>,
}

impl ModelStep {
    fn real(&self) -> Step {
        Step { base: self.base.real(), version: self.version.real(), writes: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Role {
    Down,
    /// Restarted; its first membership view is not published yet.
    Booting,
    Ready,
    Activating {
        epoch: E,
        holders: Vec<usize>,
        quorum: usize,
        /// Promises so far (its own first): who, and the copy it holds.
        copies: Vec<(usize, V, u8)>,
    },
    Owner {
        epoch: E,
        holders: Vec<usize>,
        /// Steps not yet sent (the activation's step to its epoch).
        unsent: Vec<ModelStep>,
        waiting: Option<Waiting>,
    },
}

/// An increment applied on the owner, waiting for its holders.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Waiting {
    steps: Vec<ModelStep>,
    head: V,
    value: u8,
    acked: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Body {
    Promise,
    Promised { version: V, value: u8 },
    Fenced { promised: E },
    Replicate { steps: Vec<(V, V, Option<u8>)>, head: V },
    NeedSnapshot,
    Install { version: V, value: u8 },
    Replicated { head: V },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Msg {
    from: usize,
    to: usize,
    epoch: E,
    body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    copies: Vec<Held>,
    roles: Vec<Role>,
    /// In flight, sorted (a multiset: the network reorders).
    network: Vec<Msg>,
    /// Acknowledged increments, in order: the value each answered and its owner's epoch.
    acked: Vec<(u8, E)>,
    crashes: u8,
    activations: u8,
    increments: u8,
    resends: u8,
    /// An activation started from a copy older than an acknowledged value.
    lost: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Crash(usize),
    Restart(usize),
    /// The node's first membership view is published.
    View(usize),
    /// The node activates the object seeing `live` (a bit set, itself included).
    Activate(usize, u8),
    Increment(usize),
    /// The owner resends its waiting increment to the holders that have not answered.
    Resend(usize),
    /// The node stops activating or owning the object: a timeout, or (an idle owner) the
    /// object is evicted; a later activation takes a new epoch.
    GiveUp(usize),
    Deliver(usize),
}

pub struct Ownership {
    pub bounds: Bounds,
}

impl State {
    fn send(&mut self, from: usize, to: usize, epoch: &E, body: Body) {
        let msg = Msg { from, to, epoch: *epoch, body };
        let at = self.network.binary_search(&msg).unwrap_or_else(|at| at);
        self.network.insert(at, msg);
    }

    fn ack(&mut self, value: u8, epoch: &E) {
        self.acked.push((value, *epoch));
    }
}

impl Ownership {
    /// A holder's answer to a promise, a batch of steps or an install (any node that is up).
    fn serve(&self, state: &mut State, msg: &Msg) {
        let copy = &mut state.copies[msg.to];
        let reply = match &msg.body {
            Body::Promise => {
                if rules::admits_promise(&copy.promised.real(), &msg.epoch.real()) {
                    copy.promised = msg.epoch;
                    Body::Promised { version: copy.version, value: copy.value }
                } else {
                    Body::Fenced { promised: copy.promised }
                }
            }
            Body::Replicate { steps, head } => {
                if !rules::admits_writes(&copy.promised.real(), &msg.epoch.real()) {
                    Body::Fenced { promised: copy.promised }
                } else {
                    copy.promised = msg.epoch;
                    let steps: Vec<ModelStep> = steps
                        .iter()
                        .map(|(base, version, value)| ModelStep { base: *base, version: *version, value: *value })
                        .collect();
                    let real: Vec<Step> = steps.iter().map(ModelStep::real).collect();
                    match rules::plan_steps(&copy.version.real(), &real, &head.real()) {
                        StepPlan::ApplyFrom(first) => {
                            for step in &steps[first..] {
                                copy.version = step.version;
                                copy.value = step.value.unwrap_or(copy.value);
                            }
                            Body::Replicated { head: *head }
                        }
                        StepPlan::NeedSnapshot => Body::NeedSnapshot,
                    }
                }
            }
            Body::Install { version, value } => {
                if !rules::admits_writes(&copy.promised.real(), &msg.epoch.real()) {
                    Body::Fenced { promised: copy.promised }
                } else {
                    copy.promised = msg.epoch;
                    if rules::install_replaces(&copy.version.real(), &version.real()) {
                        copy.version = *version;
                        copy.value = *value;
                    }
                    Body::Replicated { head: *version }
                }
            }
            _ => return,
        };
        state.send(msg.to, msg.from, &msg.epoch, reply);
    }

    /// An owner's or activating node's handling of a holder's answer.
    fn answer(&self, state: &mut State, msg: &Msg) {
        let me = msg.to;
        let role = state.roles[me].clone();
        match (&msg.body, role) {
            (Body::Fenced { .. }, Role::Activating { epoch, .. } | Role::Owner { epoch, .. }) if epoch == msg.epoch => {
                state.roles[me] = Role::Ready;
            }
            (Body::Promised { version, value }, Role::Activating { epoch, holders, quorum, mut copies })
                if epoch == msg.epoch && !copies.iter().any(|(who, _, _)| *who == msg.from) =>
            {
                copies.push((msg.from, *version, *value));
                if copies.len() >= quorum {
                    self.complete_activation(state, me, epoch, holders, copies);
                } else {
                    state.roles[me] = Role::Activating { epoch, holders, quorum, copies };
                }
            }
            (Body::NeedSnapshot, Role::Owner { epoch, waiting: Some(_), .. }) if epoch == msg.epoch => {
                let copy = &state.copies[me];
                let body = Body::Install { version: copy.version, value: copy.value };
                state.send(me, msg.from, &epoch, body);
            }
            (Body::Replicated { head }, Role::Owner { epoch, holders, unsent, waiting: Some(mut waiting) })
                if epoch == msg.epoch && *head == waiting.head =>
            {
                if !waiting.acked.contains(&msg.from) {
                    waiting.acked.push(msg.from);
                }
                let all = holders.iter().all(|h| *h == me || waiting.acked.contains(h));
                if !all {
                    state.roles[me] = Role::Owner { epoch, holders, unsent, waiting: Some(waiting) };
                    return;
                }
                // The output gate: released only while this node still holds its epoch.
                if state.copies[me].promised != epoch {
                    state.roles[me] = Role::Ready;
                    return;
                }
                state.ack(waiting.value, &epoch);
                state.roles[me] = Role::Owner { epoch, holders, unsent, waiting: None };
            }
            _ => {}
        }
    }

    fn complete_activation(
        &self,
        state: &mut State,
        me: usize,
        epoch: E,
        holders: Vec<usize>,
        copies: Vec<(usize, V, u8)>,
    ) {
        if state.copies[me].promised != epoch {
            state.roles[me] = Role::Ready;
            return;
        }
        let real: Vec<(u8, Version, V)> = copies.iter().map(|(_, v, value)| (*value, v.real(), *v)).collect();
        let Some(((value, best), _)) =
            rules::newest(real.iter().map(|(value, version, compact)| ((*value, *compact), version)))
        else {
            return;
        };
        // Every write an earlier epoch acknowledged must be in the copy this one starts from.
        let earlier = state.acked.iter().filter(|(_, by)| *by < epoch).map(|(acked, _)| *acked).max();
        if let Some(top) = earlier.filter(|top| *top > value) {
            state.lost.get_or_insert_with(|| {
                format!("{} activated {epoch} from a copy at {value}, after {top} was acknowledged", name(me))
            });
        }
        let version = V { epoch, seq: best.seq };
        state.copies[me].version = version;
        state.copies[me].value = value;
        let rebase = ModelStep { base: best, version, value: None };
        state.roles[me] = Role::Owner { epoch, holders, unsent: vec![rebase], waiting: None };
    }

    fn send_batch(state: &mut State, me: usize, epoch: &E, holders: &[usize], waiting: &Waiting, only: bool) {
        let steps: Vec<(V, V, Option<u8>)> = waiting.steps.iter().map(|s| (s.base, s.version, s.value)).collect();
        for holder in holders.iter().copied().filter(|h| *h != me) {
            if only && waiting.acked.contains(&holder) {
                continue;
            }
            let body = Body::Replicate { steps: steps.clone(), head: waiting.head };
            state.send(me, holder, epoch, body);
        }
    }
}

impl Model for Ownership {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let copy = Held { promised: E::default(), version: V::default(), value: 0 };
        vec![State {
            copies: vec![copy; NODES],
            roles: vec![Role::Ready; NODES],
            network: Vec::new(),
            acked: Vec::new(),
            crashes: 0,
            activations: 0,
            increments: 0,
            resends: 0,
            lost: None,
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        let b = &self.bounds;
        for node in 0..NODES {
            match &state.roles[node] {
                Role::Down => actions.push(Action::Restart(node)),
                role => {
                    // A node with nothing but its copy loses nothing in a crash: while it is
                    // down it only misses messages, which the network can delay forever
                    // anyway. So only activating and owning nodes crash, unless a booting
                    // node can act (the startup-window bug).
                    let volatile = matches!(role, Role::Activating { .. } | Role::Owner { .. });
                    if state.crashes < b.crashes && (volatile || b.startup_window) {
                        actions.push(Action::Crash(node));
                    }
                    if *role == Role::Booting {
                        actions.push(Action::View(node));
                    }
                    let may_activate = *role == Role::Ready || (*role == Role::Booting && b.startup_window);
                    if may_activate && state.activations < b.activations {
                        for live in 0..(1u8 << NODES) {
                            if live & (1 << node) != 0 {
                                actions.push(Action::Activate(node, live));
                            }
                        }
                    }
                    if matches!(role, Role::Activating { .. } | Role::Owner { .. }) {
                        actions.push(Action::GiveUp(node));
                    }
                    if let Role::Owner { waiting, .. } = role {
                        match waiting {
                            None if state.increments < b.increments => actions.push(Action::Increment(node)),
                            None => {}
                            Some(_) if state.resends < b.resends => actions.push(Action::Resend(node)),
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        for (i, msg) in state.network.iter().enumerate() {
            // Identical messages are one choice.
            if i > 0 && state.network[i - 1] == *msg {
                continue;
            }
            actions.push(Action::Deliver(i));
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut state = last.clone();
        match action {
            Action::Crash(node) => {
                state.roles[node] = Role::Down;
                state.crashes += 1;
            }
            // With the fix a booting node only serves holder requests, as a ready one does
            // that does not activate: the two states are merged.
            Action::Restart(node) => {
                state.roles[node] = if self.bounds.startup_window { Role::Booting } else { Role::Ready }
            }
            Action::View(node) => state.roles[node] = Role::Ready,
            Action::Activate(node, live) => {
                // A booting node (the bug) knows only itself; a ready one remembers all.
                let booting = state.roles[node] == Role::Booting;
                let live: Vec<usize> =
                    if booting { vec![node] } else { (0..NODES).filter(|n| live & (1 << n) != 0).collect() };
                let known = if booting { 1 } else { NODES };
                let quorum = rules::quorum(known, live.len());
                if live.len() < quorum {
                    return None;
                }
                state.activations += 1;
                let copy = &mut state.copies[node];
                let epoch = E::of(rules::next_term(&copy.promised.real(), &copy.version.real()), node);
                if !rules::admits_promise(&copy.promised.real(), &epoch.real()) {
                    return None;
                }
                copy.promised = epoch;
                let own = (node, copy.version, copy.value);
                for peer in live.iter().copied().filter(|p| *p != node) {
                    state.send(node, peer, &epoch, Body::Promise);
                }
                if quorum <= 1 {
                    self.complete_activation(&mut state, node, epoch, live, vec![own]);
                } else {
                    state.roles[node] = Role::Activating { epoch, holders: live, quorum, copies: vec![own] };
                }
            }
            Action::Increment(node) => {
                let Role::Owner { epoch, holders, mut unsent, waiting: None } = state.roles[node].clone() else {
                    return None;
                };
                let copy = &mut state.copies[node];
                if copy.promised != epoch {
                    // A newer owner's promise reached this node: its writes are fenced.
                    state.roles[node] = Role::Ready;
                    return Some(state);
                }
                state.increments += 1;
                let head = V { epoch, seq: copy.version.seq + 1 };
                let value = copy.value + 1;
                unsent.push(ModelStep { base: copy.version, version: head, value: Some(value) });
                copy.version = head;
                copy.value = value;
                let waiting = Waiting { steps: unsent, head, value, acked: Vec::new() };
                Self::send_batch(&mut state, node, &epoch, &holders, &waiting, false);
                if holders.iter().all(|h| *h == node) {
                    state.ack(value, &epoch);
                    state.roles[node] = Role::Owner { epoch, holders, unsent: Vec::new(), waiting: None };
                } else {
                    state.roles[node] = Role::Owner { epoch, holders, unsent: Vec::new(), waiting: Some(waiting) };
                }
            }
            Action::Resend(node) => {
                let Role::Owner { epoch, holders, waiting: Some(waiting), .. } = state.roles[node].clone() else {
                    return None;
                };
                state.resends += 1;
                Self::send_batch(&mut state, node, &epoch, &holders, &waiting, true);
            }
            Action::GiveUp(node) => state.roles[node] = Role::Ready,
            Action::Deliver(i) => {
                let msg = state.network.remove(i);
                let to_holder = matches!(msg.body, Body::Promise | Body::Replicate { .. } | Body::Install { .. });
                if state.roles[msg.to] == Role::Down {
                    // Lost with the node.
                } else if to_holder {
                    self.serve(&mut state, &msg);
                } else {
                    self.answer(&mut state, &msg);
                }
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no two acknowledged increments observe the same state", |_, state: &State| {
                let mut seen: Vec<u8> = state.acked.iter().map(|(value, _)| *value).collect();
                seen.sort_unstable();
                seen.windows(2).all(|w| w[0] != w[1])
            }),
            Property::always("every acknowledged write is in the state of every later epoch", |_, state: &State| {
                state.lost.is_none()
            }),
            Property::sometimes("an increment is acknowledged after a failover", |_, state: &State| {
                state.acked.len() >= 2 && state.crashes >= 1
            }),
        ]
    }
}

/// How the search walks the state space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Search {
    /// Breadth first: the shortest counterexample, but the frontier is kept in memory.
    Bfs,
    /// Depth first: memory for the visited fingerprints only (the larger bounds).
    Dfs,
}

/// What a search found.
pub struct Verdict {
    pub states: usize,
    pub depth: usize,
    /// For each property with a discovery (a counterexample of an `always`, an example of
    /// a `sometimes`): the path to it.
    pub discoveries: std::collections::BTreeMap<&'static str, Vec<(State, Option<Action>)>>,
}

impl Verdict {
    /// The path to `property`'s discovery as a line of actions, if any.
    pub fn trace(&self, property: &str) -> Option<String> {
        let path = self.discoveries.get(property)?;
        Some(
            path.iter()
                .filter_map(|(_, action)| action.as_ref())
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(" → "),
        )
    }
}

/// Runs the search to the end.
pub fn check(bounds: Bounds, search: Search) -> Verdict {
    use stateright::Checker;
    fn verdict(checker: impl Checker<Ownership>) -> Verdict {
        Verdict {
            states: checker.unique_state_count(),
            depth: checker.max_depth(),
            discoveries: checker.discoveries().into_iter().map(|(name, path)| (name, path.into_vec())).collect(),
        }
    }
    let builder = Ownership { bounds }.checker().threads(2);
    match search {
        Search::Bfs => verdict(builder.spawn_bfs().join()),
        Search::Dfs => verdict(builder.spawn_dfs().join()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_DUPLICATE: &str = "no two acknowledged increments observe the same state";
    const NO_LOSS: &str = "every acknowledged write is in the state of every later epoch";
    const FAILOVER: &str = "an increment is acknowledged after a failover";

    fn assert_holds(verdict: &Verdict) {
        println!("{} states, depth {}", verdict.states, verdict.depth);
        for property in [NO_DUPLICATE, NO_LOSS] {
            if let Some(path) = verdict.discoveries.get(property) {
                panic!("{property}: a counterexample:\n{}", describe(path));
            }
        }
        assert!(
            verdict.discoveries.contains_key(FAILOVER),
            "the search never got as far as a failover: the bounds are too tight to mean anything"
        );
    }

    /// A path, one action and the node states after it per line.
    fn describe(path: &[(State, Option<Action>)]) -> String {
        let mut out = String::new();
        for (state, action) in path {
            if let Some(action) = action {
                out.push_str(&format!("=> {action:?}\n"));
            }
            for (i, (held, role)) in state.copies.iter().zip(&state.roles).enumerate() {
                out.push_str(&format!("   {}: {held:?} {role:?}\n", name(i)));
            }
            out.push_str(&format!("   acked {:?}, in flight {}\n", state.acked, state.network.len()));
        }
        out
    }

    /// The bound CI checks: two crashes, two activations, two increments (3.3 M states).
    #[test]
    fn ownership_keeps_every_acknowledged_write_through_two_crashes() {
        let bounds = Bounds { crashes: 2, activations: 2, increments: 2, resends: 0, startup_window: false };
        assert_holds(&check(bounds, Search::Bfs));
    }

    /// The larger bound, run by `scripts/model-check`: a third activation (depth first).
    #[test]
    #[ignore]
    fn ownership_keeps_every_acknowledged_write_larger_bound() {
        let bounds = Bounds { crashes: 2, activations: 3, increments: 2, resends: 0, startup_window: false };
        assert_holds(&check(bounds, Search::Dfs));
    }

    #[test]
    fn the_check_finds_the_startup_window() {
        let bounds = Bounds { crashes: 1, activations: 2, increments: 2, resends: 0, startup_window: true };
        let verdict = check(bounds, Search::Bfs);
        let path = verdict.discoveries.get(NO_DUPLICATE).or(verdict.discoveries.get(NO_LOSS));
        let path = path.expect("a booting node that counts itself a majority of one must be caught");
        println!("counterexample ({}):\n{}", verdict.trace(NO_DUPLICATE).unwrap_or_default(), describe(path));
    }

    /// `NIMBUS_MODEL_BOUNDS=crashes,activations,increments,resends[,dfs] cargo test … explore -- --ignored`
    #[test]
    #[ignore]
    fn explore() {
        let spec = std::env::var("NIMBUS_MODEL_BOUNDS").unwrap_or_else(|_| "1,2,2,0".into());
        let n: Vec<u8> = spec.split(',').filter_map(|x| x.parse().ok()).collect();
        let search = if spec.ends_with("dfs") { Search::Dfs } else { Search::Bfs };
        let started = std::time::Instant::now();
        let bounds =
            Bounds { crashes: n[0], activations: n[1], increments: n[2], resends: n[3], startup_window: false };
        let verdict = check(bounds, search);
        println!(
            "{spec}: {} unique states, depth {}, {:.1} s; discoveries {:?}",
            verdict.states,
            verdict.depth,
            started.elapsed().as_secs_f64(),
            verdict.discoveries.keys().collect::<Vec<_>>()
        );
    }
}
