//! Wire types shared by the control plane and the nodes, and between nodes.
//!
//! The generated protobuf / gRPC code stays inside this crate (`deploy`), next
//! to the one domain type both sides exchange: the worker manifest. The
//! manifest travels as JSON inside `WorkerDeployment.manifest_json`, so adding
//! a field to it needs no protobuf change and old nodes ignore new fields.
//!
//! # Layout
//! - [`deploy`]: generated messages and the `Deployments` service (client and server).
//! - [`peer`]: node-to-node messages and the `KvPeer`, `D1Peer` and `DurablePeer` services.
//! - [`auth`]: management-token scopes and hashing, decided the same way by the control
//!   plane and every node.
//! - [`tls`]: mutual TLS for the cluster plane (peer gRPC, the control-plane watch): the
//!   cluster CA, certificates issued for node ids, the check that a caller is who it says.
//! - [`manifest`]: [`manifest::WorkerManifest`], what a deployment says about a worker
//!   beyond its component: routes, limits, isolation, bindings.

pub mod auth;
pub mod cron;
pub mod manifest;
pub mod tls;

#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod deploy {
    tonic::include_proto!("nimbus.deploy.v1");
}

#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod peer {
    tonic::include_proto!("nimbus.peer.v1");
}
