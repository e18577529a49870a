//! The JSON a node and the control plane say over HTTP, as types: one definition for the
//! server that writes it and for the CLI, testkit and chaos suite that read it, so a renamed
//! field breaks the build instead of a script.
//!
//! Serde only: no logic, no dependency on any other Nimbus crate. A field added to a response
//! is `#[serde(default)]` on the reading side when older servers may not send it.
//!
//! # Layout
//! - [`control`]: the control plane's API (deployments, versions, rollout, nodes, tokens).
//! - [`d1`]: a node's D1 REST API.
//! - [`kv`]: a node's KV REST API.
//! - [`node`]: a node's own status endpoints (`/v1/node/d1`, `/v1/node/durable`) and
//!   the ready line it prints on stdout.
//! - [`pages`]: the control plane's Pages API (projects, deployments, blobs).
//! - [`r2`]: a node's R2 management API (buckets, objects, S3 access keys).

pub mod control;
pub mod d1;
pub mod kv;
pub mod node;
pub mod pages;
pub mod queues;
pub mod r2;
