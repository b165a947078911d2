//! The `native-roots` feature: the default client configuration trusts a
//! CA the operating system's store has, here given by `SSL_CERT_FILE`, as
//! a TLS-inspecting corporate proxy's CA would be.
//!
//! One test in its own binary: the variable is read once, when the
//! default configuration is first built, and a process's environment is
//! shared by its threads.
#![cfg(feature = "native-roots")]

mod support;

use std::sync::Arc;

use support::*;
use syncws::rustls::pki_types::PrivatePkcs8KeyDer;
use syncws::rustls::{self, ServerConfig};
use syncws::{Client, Config, Listener, OwnedMessage};

#[test]
fn ssl_cert_file_roots_are_trusted_beside_mozillas() {
    init_log();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let pem = std::env::temp_dir().join(format!("syncws-native-roots-{}.pem", std::process::id()));
    std::fs::write(&pem, made.cert.pem()).unwrap();
    // Before anything builds the default configuration.
    std::env::set_var("SSL_CERT_FILE", &pem);

    let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()).into();
    let server = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    let listener = Listener::bind_with_config("127.0.0.1:0", Config::default()).unwrap().tls(Arc::new(server));
    let running = listener.spawn(|server| server.set_callback_ws(Box::new(Echo(None)))).unwrap();

    // No tls_config: the default, Mozilla's roots and the system's.
    let url = format!("wss://localhost:{}/", running.local_addr().port());
    let mut client = Client::connect(&url).expect("the SSL_CERT_FILE root is trusted");
    client.send(OwnedMessage::Text("trusted".into())).unwrap();
    assert_eq!(client.read().unwrap(), OwnedMessage::Text("trusted".into()));
    let _ = std::fs::remove_file(&pem);
}
