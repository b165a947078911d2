//! TLS for every tool, both ways: the server side of `--tls-cert`,
//! `--tls-key` and `--tls-self-signed` ([`TlsServerFlags`](crate::common::TlsServerFlags)),
//! the client side of `--tls-ca` and `--tls-fingerprint`
//! ([`TlsClientFlags`](crate::common::TlsClientFlags)).
//!
//! # Certificates on a LAN
//!
//! A certificate authority vouches for names; a machine on a LAN has
//! none that a public CA would sign. `--tls-self-signed` makes a
//! certificate at start ([`self_signed`]) and prints its SHA-256
//! fingerprint ([`Fingerprint`], as `openssl x509 -fingerprint -sha256`
//! prints it); a client given that fingerprint (`--tls-fingerprint`)
//! accepts exactly that certificate ([`pinned_config`]) and no other,
//! whatever its name, issuer or dates: the fingerprint, passed along out
//! of band, is what vouches for it. The handshake's signatures are still
//! checked against the certificate's key, so a man in the middle, who
//! cannot present that certificate's key, is refused.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use syncws::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use syncws::rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use syncws::rustls::pki_types::{
    pem::PemObject, CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime,
};
use syncws::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, OtherError, ServerConfig, SignatureScheme,
};

/// The SHA-256 of a certificate's DER: what `--tls-fingerprint` pins.
///
/// Parsed from 64 hexadecimal digits, in either case, with or without
/// colons (and with openssl's `sha256 Fingerprint=` or a `sha256:`
/// prefix); shown as `openssl x509 -fingerprint -sha256` shows it:
/// uppercase pairs joined by colons.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of the certificate `der`.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Fingerprint(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(s: &str) -> Result<Fingerprint, String> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        let t = ["sha256 fingerprint=", "sha256:", "sha256="]
            .iter()
            .find_map(|p| lower.starts_with(p).then(|| &t[p.len()..]))
            .unwrap_or(t);
        let digits: Vec<u8> = t.bytes().filter(|&b| b != b':').collect();
        let bad = || {
            format!(
                "{s:?} is not a SHA-256 fingerprint: 64 hexadecimal digits, colons optional, \
                 as `openssl x509 -noout -fingerprint -sha256 -in cert.pem` prints"
            )
        };
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let hi = char::from(pair[0]).to_digit(16).ok_or_else(bad)?;
            let lo = char::from(pair[1]).to_digit(16).ok_or_else(bad)?;
            *byte = u8::try_from(hi * 16 + lo).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

/// [`Fingerprint::from_str`], for clap.
pub fn parse_fingerprint(s: &str) -> Result<Fingerprint, String> {
    s.parse()
}

/// The ring crypto provider, as the library uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config that accepts only a certificate whose fingerprint is
/// one of `pins` (its name, issuer and dates are not looked at; the
/// handshake's signatures are checked against its key).
///
/// # Errors
///
/// No fingerprint given, or the provider refusing the protocol versions.
pub fn pinned_config(pins: &[Fingerprint]) -> Result<Arc<ClientConfig>, String> {
    if pins.is_empty() {
        return Err("no fingerprint to pin".into());
    }
    custom_config(Accept::Pinned(pins.to_vec()))
}

/// A client config that accepts any server certificate, whoever signed it
/// and whatever name it has (`syncws client -k`, as websocat's): the
/// handshake's signatures are still checked against the certificate's
/// key, so the session is encrypted, but with whoever answered. For
/// testing against self-signed servers; anyone on the path can read and
/// change the connection.
///
/// # Errors
///
/// The provider refusing the protocol versions.
pub fn accept_any_certificate() -> Result<Arc<ClientConfig>, String> {
    custom_config(Accept::Any)
}

/// A client config whose certificate check is [`CustomVerifier`]'s.
fn custom_config(accept: Accept) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let verifier = Arc::new(CustomVerifier { provider: Arc::clone(&provider), accept });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Which server certificates a [`CustomVerifier`] accepts.
#[derive(Debug)]
enum Accept {
    /// Those whose fingerprint is one of these ([`pinned_config`]).
    Pinned(Vec<Fingerprint>),
    /// Any ([`accept_any_certificate`]).
    Any,
}

/// The verifier of [`pinned_config`] and [`accept_any_certificate`]: the
/// certificate as [`Accept`] says, the handshake's signatures as rustls
/// checks them.
#[derive(Debug)]
struct CustomVerifier {
    provider: Arc<CryptoProvider>,
    accept: Accept,
}

/// A server's certificate that is not the pinned one: the error inside
/// the `rustls::Error` a pinned connection fails with.
#[derive(Debug, Clone)]
pub struct FingerprintMismatch {
    /// The fingerprint of the certificate the server presented.
    pub presented: Fingerprint,
    /// The fingerprints that were asked for.
    pub pinned: Vec<Fingerprint>,
}

impl fmt::Display for FingerprintMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server's certificate has the SHA-256 fingerprint {}, not the one given (", self.presented)?;
        for (i, p) in self.pinned.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "{p}")?;
        }
        f.write_str(
            "): it is another certificate (a server started again with --tls-self-signed makes a new one), \
             or another server; check the fingerprint the server printed",
        )
    }
}

impl std::error::Error for FingerprintMismatch {}

impl ServerCertVerifier for CustomVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pins = match &self.accept {
            Accept::Any => return Ok(ServerCertVerified::assertion()),
            Accept::Pinned(pins) => pins,
        };
        let presented = Fingerprint::of(end_entity.as_ref());
        if pins.contains(&presented) {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = FingerprintMismatch { presented, pinned: pins.clone() };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(mismatch)))))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A server's TLS: its rustls config and what to tell the user about its
/// certificate.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The rustls configuration to give the listener.
    pub config: Arc<ServerConfig>,
    /// The fingerprint of the server's certificate.
    pub fingerprint: Fingerprint,
    /// For a certificate made at start: the names and addresses it is for.
    pub self_signed_for: Option<Vec<String>>,
}

impl ServerTls {
    /// Prints, after the line with the address, the certificate's
    /// fingerprint (a line of its own, `tls certificate sha256
    /// fingerprint: AB:CD:...`) and, for a self-signed one, the names it is
    /// for and the client command that trusts it.
    pub fn announce(&self, url: &str) {
        crate::announce(&format!("tls certificate sha256 fingerprint: {}", self.fingerprint));
        if let Some(names) = &self.self_signed_for {
            crate::announce(&format!(
                "self-signed certificate for {}; connect with: syncws client --tls-fingerprint {} {url}",
                names.join(", "),
                self.fingerprint
            ));
        }
    }
}

/// The server TLS of a PEM certificate chain and key (the chain's first
/// certificate is the server's, and is the one fingerprinted).
///
/// # Errors
///
/// A file that cannot be read or holds no certificate or key, or a key
/// that does not match.
pub fn from_files(cert: &Path, key: &Path) -> Result<ServerTls, String> {
    let config = syncws::tls::load_server_config(cert, key).map_err(|e| e.to_string())?;
    let first = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .next()
        .ok_or_else(|| format!("{}: no certificate in the file", cert.display()))?
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(ServerTls { config, fingerprint: Fingerprint::of(first.as_ref()), self_signed_for: None })
}

/// A self-signed certificate made now for `localhost`, this machine's host
/// name (and `NAME.local`, its mDNS name, for a name without a dot),
/// 127.0.0.1, ::1, and the addresses `listen` names if they are specific;
/// if `listen` is the unspecified address, the address of the interface
/// of the default route too (the one the LAN knows this machine by; for
/// `::`, the IPv4 one as well). An
/// ECDSA P-256 key, kept in memory only; the certificate (PEM) is written
/// to `write_cert` if given.
///
/// # Errors
///
/// rcgen failing, or `write_cert` not writable.
pub fn self_signed(listen: &str, write_cert: Option<&Path>) -> Result<ServerTls, String> {
    let names = self_signed_names(listen);
    let mut params = rcgen::CertificateParams::new(names.clone()).map_err(|e| format!("--tls-self-signed: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let host = host_name().unwrap_or_else(|| "localhost".into());
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("syncws self-signed ({host})"));
    let key = rcgen::KeyPair::generate().map_err(|e| format!("--tls-self-signed: {e}"))?;
    let cert = params.self_signed(&key).map_err(|e| format!("--tls-self-signed: {e}"))?;
    if let Some(path) = write_cert {
        std::fs::write(path, cert.pem()).map_err(|e| format!("--tls-write-cert {}: {e}", path.display()))?;
    }
    let der = cert.der().clone();
    let fingerprint = Fingerprint::of(der.as_ref());
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .map_err(|e| format!("--tls-self-signed: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls { config: Arc::new(config), fingerprint, self_signed_for: Some(names) })
}

/// The names and addresses of [`self_signed`], without duplicates.
fn self_signed_names(listen: &str) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    if let Some(host) = host_name() {
        if !host.contains('.') {
            names.push(format!("{host}.local"));
        }
        names.insert(1, host);
    }
    let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    let bound: Vec<SocketAddr> = listen.to_socket_addrs().map(Iterator::collect).unwrap_or_default();
    for addr in &bound {
        if addr.ip().is_unspecified() {
            // `[::]` takes IPv4 clients too, on most systems.
            ips.extend(default_route_address(addr.ip()));
            if addr.is_ipv6() {
                ips.extend(default_route_address(Ipv4Addr::UNSPECIFIED.into()));
            }
        } else {
            ips.push(addr.ip());
        }
    }
    for ip in ips {
        names.push(ip.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// This machine's host name, if it is a valid DNS name (Linux:
/// `/proc/sys/kernel/hostname`, else `/etc/hostname`).
fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"].iter().find_map(|path| {
        let name = std::fs::read_to_string(path).ok()?.trim().to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name != "localhost"
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        valid.then_some(name)
    })
}

/// `addr`, or, if it is the unspecified address (`0.0.0.0`, `::`), the
/// address other machines reach this one by (that of the interface of
/// the default route), for the URL a server suggests to its clients.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip().is_unspecified().then(|| default_route_address(addr.ip())).flatten() {
        Some(ip) => SocketAddr::new(ip, addr.port()),
        None => addr,
    }
}

/// The local address of the interface of the default route, of the family
/// of `unspecified`: a UDP socket "connected" to a documentation address
/// (no packet is sent) learns it from the routing table.
fn default_route_address(unspecified: IpAddr) -> Option<IpAddr> {
    let (bind, probe): (SocketAddr, SocketAddr) = match unspecified {
        IpAddr::V4(_) => ((Ipv4Addr::UNSPECIFIED, 0).into(), (Ipv4Addr::new(192, 0, 2, 1), 9).into()),
        IpAddr::V6(_) => {
            ((Ipv6Addr::UNSPECIFIED, 0).into(), (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into())
        }
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(probe).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_as_openssl_prints_them_and_print_the_same() {
        let colons = "9F:86:D0:81:88:4C:7D:65:9A:2F:EA:A0:C5:5A:D0:15:A3:BF:4F:1B:2B:0B:82:2C:D1:5D:6C:15:B0:F0:0A:08";
        let f: Fingerprint = colons.parse().unwrap();
        assert_eq!(f.to_string(), colons);
        assert_eq!(f, Fingerprint::of(b"test"));
        assert_eq!(colons.replace(':', "").to_ascii_lowercase().parse::<Fingerprint>().unwrap(), f);
        assert_eq!(format!("sha256 Fingerprint={colons}").parse::<Fingerprint>().unwrap(), f);
        assert!("9F:86".parse::<Fingerprint>().is_err());
        assert!(colons.replace("9F", "9G").parse::<Fingerprint>().is_err());
        assert!(format!("{colons}:00").parse::<Fingerprint>().is_err());
        // Multi-byte input of the right byte length, no panic.
        assert!("é".repeat(32).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn self_signed_names_cover_localhost_loopback_and_a_specific_address() {
        let names = self_signed_names("127.0.0.1:0");
        for needed in ["localhost", "127.0.0.1", "::1"] {
            assert!(names.iter().any(|n| n == needed), "{needed} missing from {names:?}");
        }
        let names = self_signed_names("127.0.0.3:0");
        assert!(names.iter().any(|n| n == "127.0.0.3"), "{names:?}");
        let made = self_signed("127.0.0.1:0", None).unwrap();
        assert_eq!(made.self_signed_for.as_deref().map(|n| n.len()), Some(names.len() - 1));
    }
}
