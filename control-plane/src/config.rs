//! The control plane's configuration: one serde tree with named defaults, loaded from TOML
//! and overridden by `NIMBUS_*` environment variables (`NIMBUS_API__TOKEN=…`).
//! `control-plane.example.toml` lists every key and is parsed by a test.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// The SQLite database with every version of every worker lives here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub grpc: GrpcConfig,
    #[serde(default)]
    pub js: JsConfig,
    /// Ceilings on what a manifest may ask for; a deploy over one is refused naming it.
    #[serde(default)]
    pub limits: nimbus_proto::manifest::Limits,
}

/// JavaScript workers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsConfig {
    /// The engine component built by `runtimes/js/build`. Default: `nimbus-js.wasm` next to
    /// the control plane's executable; without one, `.js` deploys are refused.
    #[serde(default)]
    pub engine: Option<PathBuf>,
}

/// The HTTP API the CLI and dashboards use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// Bearer token every API call must carry. Empty: a random token is generated at start
    /// and written to `<data_dir>/api-token`.
    #[serde(default)]
    pub token: String,
    /// Largest component accepted by a deploy, in bytes.
    #[serde(default = "default_max_component_bytes")]
    pub max_component_bytes: usize,
    /// Connections served at once; one past the cap is closed on accept.
    #[serde(default = "default_api_max_connections")]
    pub max_connections: usize,
    /// HTTPS: a certificate chain and key (PEM). Without them, plain HTTP.
    #[serde(default)]
    pub tls: HttpsConfig,
}

fn default_api_max_connections() -> usize {
    256
}

/// The watch service nodes connect to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    #[serde(default = "default_grpc_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub tls: TlsConfig,
}

/// Mutual TLS on the watch service: a certificate the cluster CA issued for `control-plane`;
/// nodes must present one it issued for their node id.
pub use nimbus_proto::tls::{HttpsConfig, TlsConfig};

fn default_data_dir() -> PathBuf {
    PathBuf::from("data/control-plane")
}
fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9090))
}
fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9091))
}
fn default_max_component_bytes() -> usize {
    128 * 1024 * 1024
}

/// `NIMBUS_*` variables that are not configuration keys: the log filter, the config path, and
/// what the CLI and the testkit read.
const NOT_CONFIG: &[&str] = &["log", "config", "api_url", "api_token", "node_url", "bin_dir", "test_keep"];

macro_rules! default_from_serde {
    ($($ty:ty),*) => {$(
        impl Default for $ty {
            fn default() -> Self {
                toml::from_str("").expect("every field has a default")
            }
        }
    )*};
}
default_from_serde!(ControlPlaneConfig, ApiConfig, GrpcConfig);

impl ControlPlaneConfig {
    pub fn load(path: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment.merge(Env::prefixed("NIMBUS_").ignore(NOT_CONFIG).split("__")).extract().map_err(Box::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let path = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
            .join("../control-plane.example.toml");
        let text = std::fs::read_to_string(&path).expect("control-plane.example.toml exists");
        let config: ControlPlaneConfig = toml::from_str(&text).expect("parses");
        assert_eq!(config.api.listen.port(), 9090);
        assert_eq!(config.grpc.listen.port(), 9091);
        assert_eq!(config.api.token, "change-me");
    }

    #[test]
    fn defaults_match_the_design() {
        let config = ControlPlaneConfig::default();
        assert_eq!(config.api.listen.port(), 9090);
        assert_eq!(config.grpc.listen.port(), 9091);
        assert!(config.api.token.is_empty());
    }
}
