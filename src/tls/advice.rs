//! What the TLS failures users meet first mean, and what to do about them:
//! the sentence [`Error::Tls`](crate::Error::Tls) displays in place of
//! rustls' own, which names the failure but not the cure
//! (`invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`).
//!
//! Certificate errors come from the client's verifier, so they speak of
//! the server's certificate (this crate's servers ask for no client
//! certificate). Some webpki errors reach rustls' API only as
//! `CertificateError::Other`, an opaque boxed error whose type is
//! `rustls-webpki`'s: they are told apart by their variant name, which is
//! what rustls prints for them too, without depending on `rustls-webpki`
//! directly (its version must match the one rustls uses).

use std::borrow::Cow;

use rustls::{AlertDescription, CertificateError, InvalidMessage};

/// How to make a server certificate rustls accepts, with openssl.
const MAKE_ONE: &str = "make one with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
     -keyout key.pem -out cert.pem -subj /CN=localhost -addext basicConstraints=critical,CA:FALSE \
     -addext subjectAltName=DNS:localhost,IP:127.0.0.1`";

/// How the `syncws` command sidesteps certificate authorities on a LAN.
const OR_PIN: &str = "or, with the syncws command, use --tls-self-signed on the server and \
     --tls-fingerprint on the client";

/// What `err` means and what to do, for the common failures; `None` for
/// the others, whose rustls message stands alone.
pub(crate) fn advice(err: &rustls::Error) -> Option<Cow<'static, str>> {
    use CertificateError as C;
    let text: Cow<'static, str> = match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => "the server's certificate is not signed by a certificate authority this \
                 client trusts (it is self-signed, or from a private CA): trust that CA or the certificate \
                 itself (the syncws command: --tls-ca cert.pem, or --tls-fingerprint SHA256) (UnknownIssuer)"
                .into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the server's certificate is not valid for the host in the URL: connect with a name the \
                 certificate carries, or make one with `-addext subjectAltName=DNS:NAME,IP:ADDRESS` \
                 ({cert})"
            )
            .into(),
            C::Expired | C::ExpiredContext { .. } => {
                format!("the server's certificate has expired: renew it (or check this machine's clock) ({cert})")
                    .into()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("the server's certificate is not valid yet: check the clocks of both machines ({cert})").into()
            }
            C::BadSignature => "the server's certificate does not verify against the certificate this \
                 client trusts under its issuer's name: most often a self-signed certificate made again \
                 (same name, new key) since the client's copy was taken; give the client the server's \
                 current certificate (or its CA), or its current SHA-256 fingerprint (BadSignature)"
                .into(),
            #[allow(deprecated)]
            C::UnsupportedSignatureAlgorithm
            | C::UnsupportedSignatureAlgorithmContext { .. }
            | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                "the server's certificate is signed with an algorithm rustls does not accept (such as \
                 SHA-1 or DSA): make one with ECDSA P-256, Ed25519 or RSA and SHA-256"
                    .into()
            }
            C::BadEncoding => "the server sent a certificate that is not valid DER".into(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => format!(
                "the server's certificate is not for TLS servers (its extendedKeyUsage lacks serverAuth): \
                 leave the extension out or add `-addext extendedKeyUsage=serverAuth` ({cert})"
            )
            .into(),
            C::Other(other) => {
                let name = format!("{:?}", other.0);
                if name.starts_with("CaUsedAsEndEntity") {
                    format!(
                        "the server's certificate is a CA certificate (basicConstraints CA:TRUE, which \
                         `openssl req -x509` makes by default), which rustls refuses as a server's own \
                         certificate: {MAKE_ONE}; {OR_PIN} (CaUsedAsEndEntity)"
                    )
                    .into()
                } else if name.starts_with("UnsupportedCertVersion") {
                    format!(
                        "the server's certificate is X.509 version 1 (made without extensions), which \
                         rustls refuses: {MAKE_ONE}; {OR_PIN}"
                    )
                    .into()
                } else if name.starts_with("UnsupportedCriticalExtension") {
                    format!("the server's certificate has a critical extension rustls does not know: {MAKE_ONE}").into()
                } else {
                    // Another verifier's own error (a pinned fingerprint,
                    // say): its own words, not rustls' debug output.
                    format!("invalid peer certificate: {}", other.0).into()
                }
            }
            _ => return None,
        },
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
            "the peer does not speak TLS (a plain ws:// or http:// port?): use ws:// for a server without TLS \
             (received corrupt message of type InvalidContentType)"
                .into()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown),
        ) => format!(
            "the peer refused this side's certificate (alert {alert:?}): on a server, the client does not trust \
             it; give the client the certificate (or its CA) to trust, or its SHA-256 fingerprint"
        )
        .into(),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::OtherError;

    use super::*;

    #[derive(Debug)]
    enum FakeWebpki {
        CaUsedAsEndEntity,
    }

    impl std::fmt::Display for FakeWebpki {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl std::error::Error for FakeWebpki {}

    #[derive(Debug)]
    struct Pinned;

    impl std::fmt::Display for Pinned {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the fingerprint differs")
        }
    }

    impl std::error::Error for Pinned {}

    fn cert(e: CertificateError) -> rustls::Error {
        rustls::Error::InvalidCertificate(e)
    }

    #[test]
    fn common_certificate_errors_say_what_to_do() {
        let ca = advice(&cert(CertificateError::Other(OtherError(Arc::new(FakeWebpki::CaUsedAsEndEntity))))).unwrap();
        assert!(ca.contains("CA certificate (basicConstraints CA:TRUE"), "{ca}");
        assert!(ca.contains("basicConstraints=critical,CA:FALSE") && ca.contains("--tls-fingerprint"), "{ca}");
        let unknown = advice(&cert(CertificateError::UnknownIssuer)).unwrap();
        assert!(unknown.contains("--tls-ca") && unknown.contains("self-signed"), "{unknown}");
        assert!(advice(&cert(CertificateError::NotValidForName)).unwrap().contains("subjectAltName=DNS:"));
        assert!(advice(&cert(CertificateError::Expired)).unwrap().contains("expired"));
        assert!(advice(&cert(CertificateError::BadSignature)).unwrap().contains("made again"));
        let other = advice(&cert(CertificateError::Other(OtherError(Arc::new(Pinned))))).unwrap();
        assert_eq!(other, "invalid peer certificate: the fingerprint differs");
        assert!(advice(&rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType)).unwrap().contains("ws://"));
        assert!(advice(&rustls::Error::DecryptError).is_none());
    }
}
