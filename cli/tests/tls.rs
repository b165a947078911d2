//! TLS on every subcommand, both ways, with the built `syncws` binary:
//! each server with `--tls-self-signed` reached by a wss:// client
//! trusting the written certificate or pinning the printed fingerprint;
//! each dialling tool reaching a wss:// server with `--tls-ca` and with
//! `--tls-fingerprint`, and failing clearly with a wrong fingerprint; the
//! message a CA certificate made by `openssl req -x509` gets. Loopback
//! only; every process is killed by its handle when the test ends.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;

use support::*;
use syncws::rustls::pki_types::{pem::PemObject, CertificateDer};
use syncws::rustls::ClientConfig;
use syncws::{Client, Config, OwnedMessage};
use syncws_cli::tls::{pinned_config, Fingerprint};

const BIN: &str = env!("CARGO_BIN_EXE_syncws");

/// A server process, killed (by its handle) when dropped.
struct Server {
    child: Child,
    /// The URL or address of its first line, after the prefix.
    addr: String,
    /// The fingerprint of its second line, over TLS.
    fingerprint: Option<Fingerprint>,
    /// That fingerprint as printed.
    printed: String,
    /// Kept open, so that later lines do not meet a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `syncws ARGS` (stderr piped if `capture_stderr`), waits for its
/// first line, `PREFIX ADDR`, and, over TLS, its second, the fingerprint.
fn start_with(args: &[&str], prefix: &'static str, capture_stderr: bool) -> Server {
    let mut command = Command::new(BIN);
    command.args(args).stdout(Stdio::piped()).env("RUST_LOG", "warn");
    command.stderr(if capture_stderr { Stdio::piped() } else { Stdio::inherit() });
    let mut child = command.spawn().expect("run syncws");
    let stdout = child.stdout.take().unwrap();
    let (stdout, first, second) = within("the server's first lines", move || {
        let mut stdout = BufReader::new(stdout);
        let (mut first, mut second) = (String::new(), String::new());
        stdout.read_line(&mut first).expect("read stdout");
        if first.contains("wss://") || first.contains("https://") {
            stdout.read_line(&mut second).expect("read stdout");
        }
        (stdout, first, second)
    });
    let addr =
        first.trim().strip_prefix(prefix).unwrap_or_else(|| panic!("unexpected first line {first:?}")).to_owned();
    let printed = second.trim().strip_prefix("tls certificate sha256 fingerprint: ").unwrap_or_default().to_owned();
    let fingerprint = (!printed.is_empty()).then(|| printed.parse().unwrap());
    Server { child, addr, fingerprint, printed, _stdout: stdout }
}

fn start(args: &[&str], prefix: &'static str) -> Server {
    start_with(args, prefix, false)
}

/// A fresh folder for one test's files.
fn folder(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("syncws-tls20-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fingerprint of the first certificate of a PEM file.
fn fingerprint_of(pem: &PathBuf) -> Fingerprint {
    let der = CertificateDer::pem_file_iter(pem).unwrap().next().unwrap().unwrap();
    Fingerprint::of(der.as_ref())
}

/// A fingerprint that is not `f` (its first byte changed).
fn wrong(f: Fingerprint) -> Fingerprint {
    let mut other = f;
    other.0[0] ^= 0xff;
    other
}

/// One text message to `url` and back, with the library's client and
/// `tls`.
fn exchange(url: &str, tls: Arc<ClientConfig>, skip_first: bool) -> String {
    let url = url.to_owned();
    within("a wss:// exchange", move || {
        let config = Config::default().handshake_timeout(WAIT);
        let mut c = Client::builder().url(&url).unwrap().tls_config(tls).config(config).connect().unwrap();
        if skip_first {
            let _ = c.read().unwrap();
        }
        c.send(OwnedMessage::Text("over tls".into())).unwrap();
        loop {
            match c.read().unwrap() {
                OwnedMessage::Text(t) => return t,
                OwnedMessage::Binary(b) => return String::from_utf8(b).unwrap(),
                _ => {}
            }
        }
    })
}

/// The standard output of `openssl ARGS` (installed by .ci/run).
fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed for this test (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `syncws client ARGS` with `input`; (exit code, stdout, stderr).
fn client(args: Vec<String>, input: &[u8]) -> (i32, String, String) {
    run_client(args, Vec::new(), input.to_vec())
}

/// What a server wrote on stderr once it is killed.
fn stderr_of(mut server: Server) -> String {
    let _ = server.child.kill();
    let mut err = server.child.stderr.take().unwrap();
    within("the server's stderr", move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    })
}

#[test]
fn echo_self_signed_writes_its_certificate_and_prints_its_fingerprint() {
    let dir = folder("echo");
    let cert = dir.join("cert.pem");
    let echo = start(
        &["echo", "127.0.0.1:0", "--tls-self-signed", "--tls-write-cert", cert.to_str().unwrap()],
        "listening on ",
    );
    assert!(echo.addr.starts_with("wss://127.0.0.1:"), "{}", echo.addr);
    let printed = echo.fingerprint.expect("a fingerprint line");
    assert_eq!(printed, fingerprint_of(&cert), "the printed fingerprint is the written certificate's");
    // Printed as openssl prints it: uppercase pairs joined by colons.
    let cert_path = cert.to_str().unwrap();
    let theirs = openssl(&["x509", "-noout", "-fingerprint", "-sha256", "-in", cert_path]);
    assert_eq!(theirs.trim().split_once('=').map(|(_, f)| f), Some(echo.printed.as_str()), "{theirs}");
    // Written as PEM, for localhost, this machine's name and its addresses.
    assert!(std::fs::read_to_string(&cert).unwrap().starts_with("-----BEGIN CERTIFICATE-----\n"));
    let names = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", cert_path]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_ascii_lowercase();
    let mut needed =
        vec!["DNS:localhost".to_owned(), "IP Address:127.0.0.1".to_owned(), "IP Address:0:0:0:0:0:0:0:1".to_owned()];
    // (A host name that is not a valid DNS name is left out.)
    let valid = host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if valid && host != "localhost" {
        needed.push(format!("DNS:{host}"));
    }
    for name in needed {
        assert!(names.contains(&name), "{name} missing from {names}");
    }

    // The library's client, trusting the written certificate as its CA,
    // and pinning the fingerprint.
    let ca = syncws_cli::client::tls_config_trusting(&cert).unwrap();
    assert_eq!(exchange(&echo.addr, ca, false), "over tls");
    assert_eq!(exchange(&echo.addr, pinned_config(&[printed]).unwrap(), false), "over tls");

    // `syncws client`: --tls-ca, --tls-fingerprint as printed, and in
    // lowercase without colons.
    let plain = printed.to_string().replace(':', "").to_ascii_lowercase();
    for args in [
        vec!["--tls-ca".to_owned(), cert.to_str().unwrap().to_owned()],
        vec!["--tls-fingerprint".to_owned(), printed.to_string()],
        vec!["--tls-fingerprint".to_owned(), plain],
    ] {
        let mut args = args.clone();
        args.push(echo.addr.clone());
        let (code, out, err) = client(args.clone(), b"hello\n");
        assert_eq!((code, out.as_str()), (0, "hello\n"), "{args:?}: {err}");
    }

    // A wrong fingerprint: exit code 3, and a message naming both.
    let other = wrong(printed);
    let (code, out, err) = client(vec!["--tls-fingerprint".into(), other.to_string(), echo.addr.clone()], b"x\n");
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    assert!(err.contains(&format!("the server's certificate has the SHA-256 fingerprint {printed}")), "{err}");
    assert!(err.contains(&format!("not the one given ({other})")), "{err}");
    // A fingerprint that is not one: a usage error.
    let (code, _, err) = client(vec!["--tls-fingerprint".into(), "AB:CD".into(), echo.addr.clone()], b"");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a SHA-256 fingerprint"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chat_over_tls_serves_its_page_on_https_and_its_socket_on_wss() {
    let chat = start(&["chat", "127.0.0.1:0", "--tls-self-signed"], "chat on https://");
    let url = format!("wss://{}ws", chat.addr);
    // The first message is the room's "joined" line.
    let got = exchange(&url, pinned_config(&[chat.fingerprint.unwrap()]).unwrap(), true);
    assert!(got.ends_with(": over tls"), "{got}");
}

#[test]
fn pubsub_over_tls() {
    let pubsub = start(&["pubsub", "127.0.0.1:0", "--tls-self-signed"], "pubsub on ");
    assert!(pubsub.addr.starts_with("wss://"), "{}", pubsub.addr);
    // What a socket sends to its topic comes back to it too.
    let url = format!("{}/news", pubsub.addr);
    assert_eq!(exchange(&url, pinned_config(&[pubsub.fingerprint.unwrap()]).unwrap(), false), "over tls");
}

#[test]
fn exec_over_tls() {
    let exec = start(&["exec", "127.0.0.1:0", "--tls-self-signed", "--", "cat"], "listening on ");
    assert!(exec.addr.starts_with("wss://"), "{}", exec.addr);
    assert_eq!(exchange(&exec.addr, pinned_config(&[exec.fingerprint.unwrap()]).unwrap(), false), "over tls");
}

#[test]
fn bridge_ws2tcp_over_tls() {
    let dir = folder("ws2tcp");
    let cert = dir.join("cert.pem");
    let target = tcp_echo().to_string();
    let args = [
        "bridge",
        "ws2tcp",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &target,
        "--tls-self-signed",
        "--tls-write-cert",
        cert.to_str().unwrap(),
    ];
    let bridge = start(&args, "listening on ");
    assert!(bridge.addr.starts_with("wss://"), "{}", bridge.addr);
    let ca = syncws_cli::client::tls_config_trusting(&cert).unwrap();
    assert_eq!(exchange(&bridge.addr, ca, false), "over tls");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn proxy_listens_over_tls_and_pins_its_wss_upstream() {
    // A self-signed wss:// upstream, pinned by the proxy; the proxy itself
    // over TLS too, pinned by the client.
    let upstream = start(&["echo", "127.0.0.1:0", "--tls-self-signed"], "listening on ");
    let pin = upstream.fingerprint.unwrap().to_string();
    let args = [
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "-u",
        &upstream.addr,
        "--upstream-tls-fingerprint",
        &pin,
        "--tls-self-signed",
    ];
    let proxy = start(&args, "listening on ");
    assert!(proxy.addr.starts_with("wss://"), "{}", proxy.addr);
    let tls = pinned_config(&[proxy.fingerprint.unwrap()]).unwrap();
    assert_eq!(exchange(&proxy.addr, tls, false), "over tls");

    // From the file: upstream_tls_fingerprint.
    let dir = folder("proxy-file");
    let file = dir.join("proxy.toml");
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nupstream_tls_fingerprint = [\"{pin}\"]\n\n[[upstream]]\nurl = \"{}\"\n",
        upstream.addr
    );
    std::fs::write(&file, toml).unwrap();
    let plain = start(&["proxy", "--config", file.to_str().unwrap()], "listening on ");
    let (code, out, err) = client(vec![plain.addr.clone()], b"from the file\n");
    assert_eq!((code, out.as_str()), (0, "from the file\n"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    // A wrong pin: the upstream is unreachable (502), and the log says why.
    let bad = wrong(upstream.fingerprint.unwrap()).to_string();
    let args = ["proxy", "--listen", "127.0.0.1:0", "-u", &upstream.addr, "--upstream-tls-fingerprint", &bad];
    let proxy = start_with(&args, "listening on ", true);
    let (code, _, err) = client(vec![proxy.addr.clone()], b"never\n");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("502"), "{err}");
    let log = stderr_of(proxy);
    assert!(log.contains("not the one given"), "{log}");
}

/// Bytes through a `tcp2ws` at `addr` and back; what came back.
fn through_tcp2ws(addr: &str) -> Vec<u8> {
    let addr = addr.to_owned();
    within("bytes through tcp2ws", move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"bytes over tls").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        let _ = s.read_to_end(&mut back);
        back
    })
}

#[test]
fn bridge_tcp2ws_dials_wss_with_a_ca_and_with_a_fingerprint() {
    let dir = folder("tcp2ws");
    let cert = dir.join("cert.pem");
    let echo = start(
        &["echo", "127.0.0.1:0", "--tls-self-signed", "--tls-write-cert", cert.to_str().unwrap()],
        "listening on ",
    );
    let pin = echo.fingerprint.unwrap();
    for trust in
        [["--tls-ca".to_owned(), cert.to_str().unwrap().to_owned()], ["--tls-fingerprint".to_owned(), pin.to_string()]]
    {
        let mut args = vec!["bridge", "tcp2ws", "--listen", "127.0.0.1:0", "--to", &echo.addr, "--no-proxy-env"];
        args.extend(trust.iter().map(String::as_str));
        let bridge = start(&args, "listening on tcp ");
        assert_eq!(through_tcp2ws(&bridge.addr), b"bytes over tls", "{trust:?}");
    }
    // A wrong fingerprint: the TCP client is closed at once, and the log
    // says why (tcp2ws has no exit code per connection).
    let bad = wrong(pin).to_string();
    let args = [
        "bridge",
        "tcp2ws",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &echo.addr,
        "--no-proxy-env",
        "--tls-fingerprint",
        &bad,
    ];
    let bridge = start_with(&args, "listening on tcp ", true);
    assert_eq!(through_tcp2ws(&bridge.addr), b"");
    let log = stderr_of(bridge);
    assert!(log.contains(&format!("has the SHA-256 fingerprint {pin}, not the one given")), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `syncws bench ARGS`; (exit code, its JSON line, stderr).
fn bench(args: Vec<String>) -> (i32, String, String) {
    within("syncws bench", move || {
        let out = Command::new(BIN).arg("bench").args(&args).output().expect("run syncws bench");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = stdout.lines().find(|l| l.starts_with('{')).unwrap_or_default().to_owned();
        (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

#[test]
fn bench_dials_wss_with_a_ca_and_with_a_fingerprint() {
    let dir = folder("bench");
    let cert = dir.join("cert.pem");
    let echo = start(
        &["echo", "127.0.0.1:0", "--tls-self-signed", "--tls-write-cert", cert.to_str().unwrap()],
        "listening on ",
    );
    let pin = echo.fingerprint.unwrap();
    let common: Vec<String> =
        ["--url", &echo.addr, "--conns", "1", "--duration", "0.2", "--warmup", "0"].map(String::from).to_vec();
    for trust in
        [["--tls-ca".to_owned(), cert.to_str().unwrap().to_owned()], ["--tls-fingerprint".to_owned(), pin.to_string()]]
    {
        let (code, json, err) = bench([common.clone(), trust.to_vec()].concat());
        assert_eq!(code, 0, "{trust:?}: {json} {err}");
        assert!(json.contains("\"connected\":1,") && !json.contains("\"msgs\":0,"), "{json}");
    }
    let (code, json, _) = bench([common, vec!["--tls-fingerprint".into(), wrong(pin).to_string()]].concat());
    assert_eq!(code, 1, "{json}");
    assert!(json.contains("\"connected\":0,") && json.contains("not the one given"), "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_ca_certificate_from_the_common_openssl_command_gets_advice() {
    let dir = folder("openssl-ca");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    // The most common command, which makes a CA certificate
    // (basicConstraints CA:TRUE); openssl must be installed (.ci/run does).
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed for this test (apt-get install openssl)");
    assert!(made.success());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let echo = start(&["echo", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key], "listening on ");
    // The printed fingerprint is openssl's own.
    let openssl =
        Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha256", "-in", cert]).output().unwrap();
    let openssl: Fingerprint = String::from_utf8_lossy(&openssl.stdout).parse().unwrap();
    assert_eq!(echo.fingerprint, Some(openssl));

    let (code, _, err) = client(vec!["--tls-ca".into(), cert.into(), echo.addr.clone()], b"x\n");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("the server's certificate is a CA certificate (basicConstraints CA:TRUE"), "{err}");
    assert!(err.contains("-addext basicConstraints=critical,CA:FALSE"), "{err}");
    assert!(err.contains("--tls-self-signed") && err.contains("--tls-fingerprint"), "{err}");
    // Pinned, the same certificate is accepted: the fingerprint vouches
    // for it, not a CA.
    let (code, out, err) = client(vec!["--tls-fingerprint".into(), openssl.to_string(), echo.addr.clone()], b"x\n");
    assert_eq!((code, out.as_str()), (0, "x\n"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_tool_documents_its_tls_flags() {
    let help = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        within("--help", move || {
            let out = Command::new(BIN).args(&args).arg("--help").output().expect("run syncws");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    for server in [&["echo"][..], &["chat"], &["pubsub"], &["exec"], &["bridge", "ws2tcp"], &["proxy"]] {
        let text = help(server);
        for flag in ["--tls-cert", "--tls-key", "--tls-self-signed", "--tls-write-cert"] {
            assert!(text.contains(flag), "{server:?}: {flag} missing");
        }
    }
    for dialler in [&["client"][..], &["bridge", "tcp2ws"], &["bench"]] {
        let text = help(dialler);
        for flag in ["--tls-ca", "--tls-fingerprint"] {
            assert!(text.contains(flag), "{dialler:?}: {flag} missing");
        }
    }
    let text = help(&["proxy"]);
    assert!(text.contains("--upstream-tls-ca") && text.contains("--upstream-tls-fingerprint"));
}
