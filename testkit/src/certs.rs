//! The cluster's certificates for mutual TLS on the cluster plane: one CA, and one
//! certificate per node issued for its node id (and one for `control-plane`), as PEM files in
//! a directory. Used by the testkit, `nimbus dev`, `nimbus certs create` and `deploy/cluster`.
//!
//! Files: `ca.pem` and `ca.key` (keep the key private: it mints members), `<name>.pem` and
//! `<name>.key` per name. A directory that already holds a CA gets new names signed by it, so
//! nodes can be added later.

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// The name the control plane's certificate is issued for.
pub use nimbus_proto::tls::CONTROL_PLANE_NAME;

/// Where one process's certificate and key are.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, "Nimbus cluster CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// A name a certificate may be issued for: a DNS label sequence (a node id such as `node-1`).
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !ok {
        bail!("`{name}` cannot name a certificate: use letters, digits and `-` (a node id such as node-1)");
    }
    Ok(())
}

/// The CA in `dir` (made when there is none) and a certificate for each of `names`, reusing
/// those that exist. Returns where each name's files are.
pub fn create(dir: &Path, names: &[String]) -> Result<Vec<(String, CertFiles)>> {
    for name in names {
        check_name(name)?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca_pem, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let key = if ca_key.is_file() {
        let pem = std::fs::read_to_string(&ca_key).with_context(|| format!("reading {}", ca_key.display()))?;
        KeyPair::from_pem(&pem).with_context(|| format!("{} is not a private key", ca_key.display()))?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key, &key.serialize_pem())?;
        std::fs::write(&ca_pem, cert.pem()).with_context(|| format!("writing {}", ca_pem.display()))?;
        key
    };
    let issuer = Issuer::new(ca_params()?, key);
    let mut made = Vec::with_capacity(names.len());
    for name in names {
        let files = CertFiles {
            ca: ca_pem.clone(),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        if !(files.cert.is_file() && files.key.is_file()) {
            let mut params = CertificateParams::new(vec![name.clone()])?;
            params.distinguished_name.push(DnType::CommonName, name.as_str());
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            // Every member both serves and calls.
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            write_private(&files.key, &key.serialize_pem())?;
            std::fs::write(&files.cert, cert.pem()).with_context(|| format!("writing {}", files.cert.display()))?;
        }
        made.push((name.clone(), files));
    }
    Ok(made)
}

/// Writes `contents` to `path`, readable by its owner alone (mode 0600).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_name_their_node_and_chain_to_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["node-1".to_string(), CONTROL_PLANE_NAME.to_string()];
        let made = create(dir.path(), &names).expect("certs");
        let pem = std::fs::read(&made[0].1.cert).expect("cert");
        let der = rustls_pemfile_der(&pem);
        assert!(nimbus_proto::tls::caller_is(std::slice::from_ref(&der), "node-1"));
        assert!(!nimbus_proto::tls::caller_is(&[der], "node-2"), "issued for node-1 only");
        // A second call reuses the CA: node-2 is signed by the same key.
        let again = create(dir.path(), &["node-2".to_string()]).expect("more certs");
        assert_eq!(std::fs::read(&again[0].1.ca).expect("ca"), std::fs::read(&made[0].1.ca).expect("ca"));
        assert!(create(dir.path(), &["../x".to_string()]).is_err());
    }

    fn rustls_pemfile_der(pem: &[u8]) -> rustls_pki_types::CertificateDer<'static> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(pem).expect("pem")
    }
}
