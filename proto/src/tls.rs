//! Mutual TLS for the cluster plane: peer gRPC and the control-plane watch (and the
//! [`HttpsConfig`] section of the HTTP listeners, served by `nimbus-http`).
//!
//! One cluster CA signs a certificate per node, issued for the node id as its DNS name (and
//! one for the control plane, issued for `control-plane`). A server asks every caller for a
//! certificate from that CA and refuses the handshake without one; a caller checks that the
//! server's certificate names the node it meant to reach. On top of the handshake, each
//! request names its caller (`x-nimbus-node`) and [`caller_is`] checks the certificate was
//! issued for that name, so a node cannot speak for another even with a valid certificate.

use rustls_pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The name the control plane's certificate is issued for.
pub const CONTROL_PLANE_NAME: &str = "control-plane";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
}

/// Where a process's mutual-TLS material is: the node's `[tls]` and the control plane's
/// `[grpc.tls]` are this one section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA's certificate (PEM).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// This process's certificate (PEM), issued for its node id (or `control-plane`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// This process's private key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Plain gRPC with no certificates: only to measure what TLS costs, never on a network
    /// anyone else reaches.
    #[serde(default)]
    pub insecure_plaintext: bool,
}

impl TlsConfig {
    /// The material, or `None` when the operator chose plaintext; `section` names the
    /// configuration section in the error when a file is missing.
    pub fn load(&self, section: &str) -> Result<Option<ClusterTls>, TlsError> {
        if self.insecure_plaintext {
            tracing::warn!("{section}.insecure_plaintext: gRPC runs without TLS or authentication");
            return Ok(None);
        }
        match (&self.ca_file, &self.cert_file, &self.key_file) {
            (Some(ca), Some(cert), Some(key)) => ClusterTls::load(ca, cert, key).map(Some),
            _ => Err(TlsError::Config(format!(
                "{section}.ca_file, cert_file and key_file are required: the cluster plane runs over mutual TLS. Make them with `nimbus certs create`, or set {section}.insecure_plaintext = true to measure without"
            ))),
        }
    }
}

/// An HTTP listener's `tls` section (the node's `http.tls` and `management.tls`, the control
/// plane's `api.tls`): its certificate chain and private key, PEM files. Without them the
/// listener serves plain HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// This process's certificate and key, and the cluster CA it trusts.
#[derive(Clone)]
pub struct ClusterTls {
    ca: Certificate,
    identity: Identity,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls { .. }")
    }
}

impl ClusterTls {
    /// From PEM files: the CA's certificate, this process's certificate and its key.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
        };
        let (ca, cert, key) = (read(ca)?, read(cert)?, read(key)?);
        Ok(Self::from_pem(&ca, &cert, &key))
    }

    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Self {
        ClusterTls { ca: Certificate::from_pem(ca), identity: Identity::from_pem(cert, key) }
    }

    /// A server that presents this certificate and requires callers to present one the
    /// cluster CA signed.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(self.identity.clone()).client_ca_root(self.ca.clone())
    }

    /// A client that presents this certificate and accepts only a server whose certificate
    /// the cluster CA signed for `server_name` (a node id, or [`CONTROL_PLANE_NAME`]).
    pub fn client(&self, server_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(self.ca.clone()).identity(self.identity.clone()).domain_name(server_name)
    }
}

/// Whether the caller's certificate (the first of `certs`; the handshake has already
/// checked it chains to the cluster CA) was issued for `name`.
pub fn caller_is(certs: &[CertificateDer<'static>], name: &str) -> bool {
    let Some(leaf) = certs.first() else { return false };
    let Ok(server_name) = ServerName::try_from(name) else { return false };
    match webpki::EndEntityCert::try_from(leaf) {
        Ok(cert) => cert.verify_is_valid_for_subject_name(&server_name).is_ok(),
        Err(_) => false,
    }
}
