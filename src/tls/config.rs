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
/// the ring provider, ALPN `http/1.1`, no client certificate. Built once,
/// on first use.
///
/// With the `native-roots` feature it also trusts the operating system's
/// roots, loaded by `rustls-native-certs`: on Linux the distribution's
/// bundle, or the PEM file named by `SSL_CERT_FILE` and the directory
/// named by `SSL_CERT_DIR` when those are set; the platform store on
/// macOS and Windows. That is what a TLS-inspecting corporate proxy needs,
/// whose certificates come from a CA the company installed. Certificates
/// that cannot be loaded are logged (`warn`) and skipped; the Mozilla
/// roots are always there.
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
    #[allow(unused_mut)] // mutated with the `native-roots` feature only
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    #[cfg(feature = "native-roots")]
    add_native_roots(&mut roots);
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::clone(CONFIG.get_or_init(|| Arc::new(config))))
}

/// Adds the operating system's roots (or those of `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`) to `roots`; what cannot be loaded is logged.
#[cfg(feature = "native-roots")]
fn add_native_roots(roots: &mut RootCertStore) {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::warn!("tls: loading the system's trust roots: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    log::debug!("tls: {added} roots from the system added to Mozilla's ({ignored} unusable skipped)");
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
