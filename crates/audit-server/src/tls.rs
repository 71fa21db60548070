//! TLS on the main listener (rustls, ring provider): the certificate and key come from
//! PEM files and are reread on reload, so a renewed certificate takes effect without
//! a restart; connections already open keep the one they started with.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate in force, swapped whole by a reload.
pub struct ReloadableCertificate {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for ReloadableCertificate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ReloadableCertificate")
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ReloadableCertificate {
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            current: ArcSwap::from_pointee(certified_key(cert_file, key_file)?),
        })
    }

    /// Reads both files into a certificate that `replace` can put in force.
    pub fn read(cert_file: &Path, key_file: &Path) -> anyhow::Result<NewCertificate> {
        Ok(NewCertificate(certified_key(cert_file, key_file)?))
    }

    /// New connections get this certificate; open ones keep theirs.
    pub fn replace(&self, certificate: NewCertificate) {
        self.current.store(Arc::new(certificate.0));
    }
}

/// A certificate and key read and checked, not in force yet.
pub struct NewCertificate(CertifiedKey);

/// The server configuration around the certificate: TLS 1.2 and 1.3, HTTP/1.1.
pub fn server_config(certificate: Arc<ReloadableCertificate>) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no safe protocol version")?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(cert_file: &Path, key_file: &Path) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", cert_file.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("cannot read a private key from {}", key_file.display()))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("the key in {} is not usable", key_file.display()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .context("the private key does not belong to the certificate")?;
    Ok(certified)
}
