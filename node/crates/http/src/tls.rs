//! HTTPS for a listener: a certificate chain and its key in PEM, served with ALPN for HTTP/2
//! and HTTP/1.1. Off when no certificate is configured (loopback development).

pub use nimbus_proto::tls::HttpsConfig;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("{section}: give both cert_file and key_file, or neither")]
    Incomplete { section: String },
    #[error("{section}: reading {path}: {reason}")]
    Read { section: String, path: String, reason: String },
    #[error("{section}: {reason}")]
    Invalid { section: String, reason: String },
}

/// The acceptor for a listener's `tls` section, or `None` when no certificate is configured;
/// `section` names the configuration section in errors.
pub fn load(config: &HttpsConfig, section: &str) -> Result<Option<TlsAcceptor>, HttpsError> {
    let (cert, key) = match (&config.cert_file, &config.key_file) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err(HttpsError::Incomplete { section: section.into() }),
    };
    let read_error = |path: &Path, reason: String| HttpsError::Read {
        section: section.into(),
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| read_error(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(read_error(cert, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_error(key, e.to_string()))?;
    acceptor(chain, key).map(Some).map_err(|reason| HttpsError::Invalid { section: section.into(), reason })
}

/// An acceptor presenting `chain` and offering HTTP/2 and HTTP/1.1.
pub fn acceptor(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a server identity: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
