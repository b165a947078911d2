//! TLS for `wss://` clients and listeners (feature `tls`), with rustls and
//! its `ring` crypto provider.
//!
//! - Server: [`Listener::tls`](crate::Listener::tls) serves every
//!   connection over TLS (HTTP and WebSocket still share the port); for one
//!   stream, wrap it in [`TlsStream::server`] and hand it to
//!   [`Server::new`](crate::Server::new) or [`accept`](crate::accept).
//!   [`load_server_config`] reads a PEM certificate chain and key.
//! - Client: `wss://` URLs work with [`Client`](crate::Client), trusting
//!   the Mozilla roots of the `webpki-roots` crate
//!   ([`default_client_config`]; with the `native-roots` feature also the
//!   operating system's, and `SSL_CERT_FILE`'s) and checking the
//!   certificate against the URL's host (also sent as SNI), with or
//!   without a proxy in between;
//!   [`ClientBuilder::tls_config`](crate::ClientBuilder::tls_config) takes
//!   other roots or a client certificate. A `wss://` URL is never served in
//!   plaintext.
//!
//! The TLS handshake runs as the connection thread reads the HTTP head,
//! and is bounded by [`Config::handshake_timeout`](crate::Config) together
//! with the head: a peer that connects and sends nothing, or stalls
//! half-way, is dropped when it expires. The connection thread does the
//! handshake's socket reads and writes; its computing steps (key exchange,
//! signature) run on a few shared threads, as many as cores (at most 4),
//! and the connection thread waits for each. A step never waits for the
//! network, so a stalled peer holds none of those threads. This keeps the
//! crypto's deep stack and its malloc leftovers off every connection
//! thread, which keeps what it touches for good: an idle `wss://`
//! connection costs the server much less memory, for a little more CPU
//! per handshake (figures in the repository's `bench-results/notes.md`).
//!
//! # Errors
//!
//! A TLS failure (an untrusted certificate, a bad record, an alert from the
//! peer) reaches the caller as [`Error::Tls`] with
//! [`ErrorKind::InvalidData`](io::ErrorKind::InvalidData) carrying the
//! [`rustls::Error`]; [`rustls_error`] finds it. Its `Display` says, for
//! the failures users meet first, what happened and what to do: a CA
//! certificate (basicConstraints CA:TRUE, `openssl req -x509`'s default)
//! used as a server's own, an unknown issuer, a self-signed certificate
//! made again since the client's copy, a name the certificate lacks, an
//! expired one, a `wss://` URL aimed at a plain port; a custom verifier's
//! own error (`CertificateError::Other`) is shown in its own words. A plaintext HTTP request
//! sent to a TLS port is answered with a plaintext `400 Bad Request` saying
//! so, and the connection ends.
//!
//! # Locking
//!
//! The reading half stays on the connection thread while writers use the
//! writing half from any thread, so the rustls session is shared:
//!
//! - the reader reads the socket outside any lock, then locks the session
//!   briefly to feed it the ciphertext and take the plaintext out;
//! - a writer takes the *output* lock, then the session lock to encrypt (at
//!   most 64 KiB at a time) and take the resulting records, releases the
//!   session and writes the records to the socket while still holding the
//!   output lock: records reach the socket in the order they were made,
//!   and the reader never waits for a socket write;
//! - records the reader causes (handshake messages, alerts, key update
//!   replies, session tickets) are written by the reader if the output lock
//!   is free, or else by the thread holding it, which looks at the session
//!   once more before letting go (and lets go while holding the session
//!   lock, so no record is stranded);
//! - the [`Closer`](crate::transport::Closer) shuts the socket down at
//!   once even while a writer is blocked; it sends `close_notify` first
//!   only when no write is in progress, waiting at most a quarter of a
//!   second for it.
//!
//! Buffers are bounded: the session's outgoing buffers by
//! `set_buffer_limit` (64 KiB), its incoming plaintext by rustls' own limit
//! (16 KiB, and the reader drains it before feeding more), and the read
//! buffer, 1 KiB when idle, grows to one maximum-size record at most.

use std::io;

use crate::error::Error;

mod advice;
mod config;
mod pool;
mod session;
mod stream;

pub(crate) use advice::advice;
pub use config::{default_client_config, load_server_config};
pub use stream::TlsStream;

/// A rustls error as the I/O error the halves report.
fn io_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The [`rustls::Error`] behind `err`, if it is a TLS failure: an
/// untrusted certificate, a bad record, an alert from the peer.
///
/// ```no_run
/// match syncws::Client::connect("wss://self-signed.example") {
///     Err(e) if matches!(syncws::tls::rustls_error(&e), Some(syncws::rustls::Error::InvalidCertificate(_))) => {
///         eprintln!("the server's certificate is not trusted: {e}")
///     }
///     other => { /* ... */ }
/// }
/// ```
pub fn rustls_error(err: &Error) -> Option<&rustls::Error> {
    match err {
        Error::Tls(e) | Error::Io(e) => e.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}
