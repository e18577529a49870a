//! The foundations every layer of the node shares: the configuration tree, the Prometheus
//! registry and the task set with shutdown.
//!
//! Must never depend on another Nimbus crate but `nimbus-proto`'s types; everything else
//! depends on it, so a change here rebuilds the node.
//!
//! # Layout
//! - [`config`]: the node's one serde configuration tree, a documented section per subsystem.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`tasks`]: long-lived tasks and shutdown.

pub mod config;
pub mod metrics;
pub mod tasks;
