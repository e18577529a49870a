//! The chaos suite: fault scenarios against a real Nimbus cluster, with a recorded history
//! of every client operation and checkers that judge it.
//!
//! A scenario runs four workloads at once — a D1 register and ledger, KV puts and deletes,
//! a Durable Object counter, and hello-worker requests — injects one fault (the nemesis)
//! while they run, heals it, waits for the cluster to converge, then checks the invariants
//! DESIGN.md promises: no acknowledged D1 write lost, `linearizable` reads linearizable and
//! `bookmark` reads reading the client's own writes, KV replicas identical after the heal
//! with nothing deleted coming back, one live instance per Durable Object and a count equal
//! to the acknowledged increments, and workers served by the surviving nodes.
//!
//! # Layout
//! - [`target`]: the cluster under test: processes (testkit) or the docker-compose cluster.
//! - [`api`]: the REST calls the workloads and checkers make.
//! - [`history`]: operations as clients saw them (start, end, outcome).
//! - [`workload`]: the clients.
//! - [`nemesis`]: the faults.
//! - [`check`], [`linearizable`]: the checkers.
//! - [`scenario`]: one scenario from setup to verdicts, profiles, the report.

pub mod api;
pub mod check;
pub mod history;
pub mod linearizable;
pub mod nemesis;
pub mod scenario;
pub mod target;
pub mod workload;
