//! TLS on the listener: `--tls-cert` and `--tls-key` (PEM files), served with rustls
//! (TLS 1.2 and 1.3, HTTP/1.1), the certificate and key read again on SIGHUP.
//!
//! The certificate file holds the server's certificate first, then any intermediate
//! certificates; the key file one private key (PKCS#8, PKCS#1 RSA or SEC1 EC). A
//! reload that fails (a file missing, unreadable, or a key that does not belong to the
//! certificate) is logged and changes nothing: the server goes on with what it had.
//! Connections already open keep the certificate they were made with; new ones get
//! the new one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where the certificate and the key are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
}

/// The listener's TLS: the rustls configuration and what it serves, reloadable.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Reloadable>,
    config: Arc<rustls::ServerConfig>,
}

/// The certificate being served, swapped whole on reload.
#[derive(Debug)]
struct Reloadable(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Tls {
    /// Reads the files and builds the configuration; the error says which file is
    /// wrong and how (never what a key holds).
    pub fn load(files: TlsFiles) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = certified_key(&files, &provider)?;
        let resolver = Arc::new(Reloadable(RwLock::new(Arc::new(key))));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            files,
            provider,
            resolver,
            config: Arc::new(config),
        })
    }

    /// Reads the files again and serves what they hold from the next connection on;
    /// on error nothing changes.
    pub fn reload(&self) -> Result<(), String> {
        let key = certified_key(&self.files, &self.provider)?;
        *self.resolver.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// An acceptor of TLS connections with this configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the TLS {what} `{}`: {e}", path.display()))
}

/// The certificate chain and the signing key, checked to belong together.
fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let cert_pem = read(&files.cert, "certificate")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "the TLS certificate `{}` is not PEM: {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "the TLS certificate `{}` holds no certificate (`-----BEGIN CERTIFICATE-----`)",
            files.cert.display()
        ));
    }
    let key_pem = read(&files.key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        format!(
            "the TLS key `{}` holds no private key in PEM (PKCS#8, PKCS#1 or SEC1)",
            files.key.display()
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the TLS key `{}` cannot be used: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|_| {
        format!(
            "the TLS key `{}` does not belong to the certificate `{}`",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(certified)
}
