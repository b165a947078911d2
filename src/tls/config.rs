//! The rustls configurations: the client's default and a server's from
//! PEM files, both with the ring provider.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::{Error, Result};

/// The ring crypto provider, which every config built here uses: the
/// process-wide default may be unset, or another provider.
pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration `wss://` URLs use unless
/// [`ClientBuilder::tls_config`](crate::ClientBuilder::tls_config) gives
/// another: the Mozilla roots from `webpki-roots`, TLS 1.2 and 1.3 with
/// the ring provider, ALPN `http/1.1`, no client certificate. Built once.
///
/// To trust other roots, build a config the same way:
///
/// ```
/// use std::sync::Arc;
/// use syncws::rustls::{self, ClientConfig, RootCertStore};
///
/// let mut roots = RootCertStore::empty();
/// // roots.add(my_ca_certificate)?;
/// let provider = Arc::new(rustls::crypto::ring::default_provider());
/// let config = ClientConfig::builder_with_provider(provider)
///     .with_safe_default_protocol_versions()?
///     .with_root_certificates(roots)
///     .with_no_client_auth();
/// let builder = syncws::Client::builder().tls_config(Arc::new(config));
/// # Ok::<(), rustls::Error>(())
/// ```
pub fn default_client_config() -> Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(Arc::clone(config));
    }
    let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::clone(CONFIG.get_or_init(|| Arc::new(config))))
}

/// A server configuration from a PEM certificate chain (the server's
/// certificate first) and a PEM private key (PKCS#8, PKCS#1 or SEC1): TLS
/// 1.2 and 1.3 with the ring provider, ALPN `http/1.1`, no client
/// certificates.
///
/// ```no_run
/// let config = syncws::tls::load_server_config("cert.pem".as_ref(), "key.pem".as_ref())?;
/// syncws::Listener::bind("0.0.0.0:8443")?.tls(config).serve(|_server| { /* callbacks */ })?;
/// # Ok::<(), syncws::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Config`] naming the file, if one cannot be read, holds no
/// certificate or key, or the key does not match the certificate.
pub fn load_server_config(cert_chain: &Path, private_key: &Path) -> Result<Arc<ServerConfig>> {
    let bad = |path: &Path, what: &dyn fmt::Display| Error::Config(format!("tls: {}: {what}", path.display()));
    let certs = CertificateDer::pem_file_iter(cert_chain)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| bad(cert_chain, &e))?;
    if certs.is_empty() {
        return Err(bad(cert_chain, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(private_key).map_err(|e| bad(private_key, &e))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(private_key, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_files_are_config_errors_naming_the_file() {
        let missing = Path::new("/nonexistent/cert.pem");
        match load_server_config(missing, missing) {
            Err(Error::Config(msg)) => assert!(msg.contains("/nonexistent/cert.pem"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }
}
