//! The built `syncws` binary: `syncws client` in a pipe against
//! `syncws echo`, exit codes, the chat page, and servers that run out of
//! descriptors.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use support::*;
use syncws::{Client, CloseCode, Config, OwnedMessage};

const BIN: &str = env!("CARGO_BIN_EXE_syncws");

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `syncws ARGS` and waits (by reading its stdout) for the line
/// `PREFIX ADDR` it prints once listening.
fn start(args: &[&str], prefix: &'static str) -> Server {
    let child =
        Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("run syncws");
    listening(child, prefix)
}

/// Waits for a started server's first stdout line, `PREFIX ADDR`.
fn listening(mut child: std::process::Child, prefix: &str) -> Server {
    let stdout = child.stdout.take().unwrap();
    let line = within("the server's address line", move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read stdout");
        line
    });
    let addr = line.trim().strip_prefix(prefix).unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();
    Server { child, addr }
}

/// Runs `syncws client ARGS` with `input` on stdin; returns (exit code,
/// stdout, stderr).
fn client(args: Vec<String>, input: Vec<u8>) -> (i32, String, String) {
    run_client(args, Vec::new(), input)
}

#[test]
fn client_in_a_pipe_against_echo() {
    let echo = start(&["echo", "127.0.0.1:0"], "listening on ");
    let lines: Vec<String> = (0..200).map(|i| format!("line {i} héllo {}", "x".repeat(i * 7))).collect();
    let input = lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
    let (code, out, err) = client(vec![echo.addr.clone()], input);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), lines);
    assert!(err.contains("closed: 1000"), "{err}");

    // Binary mode, CRLF line endings, and a last line without a newline;
    // stdout is a pipe, so binary messages come out raw, without a line
    // ending each.
    let (code, out, _) = client(vec!["--binary".into(), echo.addr.clone()], b"a\r\nb\nc".to_vec());
    assert_eq!(code, 0);
    assert_eq!(out, "abc");
}

#[test]
fn client_binary_output_hex_base64_raw() {
    let echo = start(&["echo", "127.0.0.1:0"], "listening on ");
    // Three binary messages, one with a newline inside ("x\ny" in one
    // message, sent with -1): hex and base64 give one line per message.
    let input = b"a\nb\nc\n".to_vec();
    for (format, want) in [("hex", "61\n62\n63\n"), ("base64", "YQ==\nYg==\nYw==\n"), ("raw", "abc")] {
        let args = vec!["--binary".into(), "--binary-output".into(), format.into(), echo.addr.clone()];
        let (code, out, err) = client(args, input.clone());
        assert_eq!((code, out.as_str()), (0, want), "{format}: {err}");
    }
    let args = vec!["-1".into(), "--binary".into(), "--binary-output".into(), "hex".into(), echo.addr.clone()];
    let (code, out, err) = client(args, b"x\ny".to_vec());
    assert_eq!((code, out.as_str()), (0, "780a79\n"), "{err}");
    let (code, _, err) = client(vec!["--binary-output".into(), "octal".into(), echo.addr.clone()], Vec::new());
    assert_eq!(code, 2, "{err}");
}

/// `syncws client --binary ARGS URL` with its standard output on a
/// pseudo-terminal, as in an interactive shell, `input` on stdin; returns
/// (exit code, what the terminal showed, without carriage returns).
#[cfg(unix)]
fn client_on_a_terminal(args: &[&str], url: &str, input: &'static [u8]) -> (i32, String) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, slave) = {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty(3) writes the two descriptors it opens into
        // `master` and `slave`; the name, termios and window size
        // pointers may be null (not wanted, defaults).
        let rc =
            unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened by openpty and belong
        // to nothing else; each is owned once from here on.
        unsafe { (std::fs::File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
    };
    let mut command = Command::new(BIN);
    command
        .arg("client")
        .arg("--binary")
        .args(args)
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run syncws client");
    // The child holds the terminal now: the master's reads end (EIO) when
    // it exits.
    drop(command);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let shown = within("the terminal's output", move || {
        let mut shown = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = master.read(&mut buf) {
            shown.extend_from_slice(&buf[..n]);
        }
        shown
    });
    let code = within("the client to exit", move || child.wait().expect("wait")).code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&shown).replace('\r', ""))
}

#[cfg(unix)]
#[test]
fn client_binary_output_defaults_to_hex_on_a_terminal() {
    let echo = start(&["echo", "127.0.0.1:0"], "listening on ");
    // Two binary messages, one with a line ending inside, and one with a
    // terminal's escape character: one line of hex each.
    let (code, shown) = client_on_a_terminal(&["-1"], &echo.addr, b"a\x1b[2Jb\nc");
    assert_eq!((code, shown.as_str()), (0, "611b5b324a620a63\n"));
    let (code, shown) = client_on_a_terminal(&[], &echo.addr, b"a\nb\n");
    assert_eq!((code, shown.as_str()), (0, "61\n62\n"));
    // --binary-output still decides when given.
    let (code, shown) = client_on_a_terminal(&["--binary-output", "raw"], &echo.addr, b"a\nb\n");
    assert_eq!((code, shown.as_str()), (0, "ab"));
}

/// A server that counts the Pings it gets.
struct PingCounter(crossbeam_channel::Sender<()>);

impl syncws::WsTrait for PingCounter {
    fn on_open(&mut self, _shake: syncws::WsHandshake) -> syncws::Result<Option<syncws::WsOption>> {
        Ok(None)
    }
    fn on_ping(&mut self, val: Vec<u8>) -> syncws::Result<Option<OwnedMessage>> {
        let _ = self.0.send(());
        Ok(Some(OwnedMessage::Pong(val)))
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> syncws::Result<()> {
        Ok(())
    }
}

#[test]
fn client_pings_at_its_ping_interval() {
    init_log();
    let (tx, pings) = crossbeam_channel::unbounded();
    let running = syncws::Listener::bind("127.0.0.1:0")
        .unwrap()
        .spawn(move |s| s.set_callback_ws(Box::new(PingCounter(tx.clone()))))
        .unwrap();
    let url = format!("ws://{}/", running.local_addr());
    // A quiet client (stdin open, nothing typed): five Pings come within
    // one watchdog (60s) in all. At the default interval (30s) the fifth
    // would come after 150s: only the flag makes them come in time.
    let client = Interactive::start(&["--ping-interval".into(), "50ms".into(), url]);
    let watchdog = std::time::Instant::now() + WAIT;
    for n in 1..=5 {
        if pings.recv_deadline(watchdog).is_err() {
            panic!("ping {n} did not come");
        }
    }
    assert_eq!(client.finish(), 0);
    running.shutdown();
}

/// A server that reads and never answers.
struct Mute;

impl syncws::WsTrait for Mute {
    fn on_open(&mut self, _shake: syncws::WsHandshake) -> syncws::Result<Option<syncws::WsOption>> {
        Ok(None)
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> syncws::Result<()> {
        Ok(())
    }
}

#[test]
fn client_one_message_prints_one_reply_or_exits_1() {
    let echo = start(&["echo", "127.0.0.1:0"], "listening on ");
    // All of stdin is one message (its last line ending dropped).
    let (code, out, err) = client(vec!["-1".into(), echo.addr.clone()], b"first line\nsecond line\n".to_vec());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "first line\nsecond line\n");
    let (code, out, err) = client(vec!["--one-message".into(), echo.addr.clone()], b"{\"op\":\"ping\"}".to_vec());
    assert_eq!((code, out.as_str()), (0, "{\"op\":\"ping\"}\n"), "{err}");

    // A server that never answers: exit 1 once --timeout has passed.
    init_log();
    let running = syncws::Listener::bind("127.0.0.1:0").unwrap().spawn(|s| s.set_callback_ws(Box::new(Mute))).unwrap();
    let args = vec!["-1".into(), "--timeout".into(), "200ms".into(), format!("ws://{}/", running.local_addr())];
    let (code, out, err) = client(args, b"anyone?\n".to_vec());
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("no reply within"), "{err}");
    // One that closes first: no reply either.
    running.shutdown();
    let closer = syncws::Listener::bind("127.0.0.1:0").unwrap().spawn(|s| s.set_callback_ws(Box::new(Closer))).unwrap();
    let (code, _, err) = client(vec!["-1".into(), format!("ws://{}/", closer.local_addr())], b"hi".to_vec());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("closed first: 4000"), "{err}");
    closer.shutdown();
    // -1 and --reconnect do not go together.
    let (code, _, err) = client(vec!["-1".into(), "--reconnect".into(), echo.addr.clone()], Vec::new());
    assert_eq!(code, 2, "{err}");
}

#[test]
fn client_insecure_accepts_a_self_signed_certificate_with_a_warning() {
    // Self-signed, and for another name than the one dialled.
    let (dir, cert, key) = tls_files_for("insecure", &["elsewhere.invalid"]);
    let echo = start(&["echo", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key], "listening on ");
    let (code, out, err) = client(vec!["-k".into(), echo.addr.clone()], b"trust me\n".to_vec());
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "trust me\n");
    assert!(err.contains("warning: --insecure"), "{err}");
    let (code, out, err) = client(vec!["--insecure".into(), "-1".into(), echo.addr.clone()], b"hi".to_vec());
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    // Without it, refused (exit 3); trusting the certificate is not
    // enough either: its name is not the server's.
    let (code, _, err) = client(vec![echo.addr.clone()], Vec::new());
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = client(vec!["--tls-ca".into(), cert.clone(), echo.addr.clone()], Vec::new());
    assert_eq!(code, 3, "{err}");
    let args = vec!["-k".into(), "--tls-ca".into(), cert.clone(), echo.addr.clone()];
    let (code, _, err) = client(args, Vec::new());
    assert_eq!(code, 2, "-k and --tls-ca conflict: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `syncws client ARGS` with its standard streams piped: stdin to write
/// to, stdout and stderr line by line on channels.
struct Interactive {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    out: crossbeam_channel::Receiver<String>,
    err: crossbeam_channel::Receiver<String>,
}

impl Interactive {
    fn start(args: &[String]) -> Interactive {
        let mut command = Command::new(BIN);
        for var in ["http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
            command.env_remove(var);
        }
        let mut child = command
            .arg("client")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run syncws client");
        let lines = |stream: Box<dyn Read + Send>| {
            let (tx, rx) = crossbeam_channel::unbounded();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().unwrap()));
        let err = lines(Box::new(child.stderr.take().unwrap()));
        Interactive { stdin: child.stdin.take(), child, out, err }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("write to the client's stdin");
    }

    /// Skips standard error lines until one contains `needle`.
    fn wait_err(&self, needle: &str) -> String {
        loop {
            let line = recv(&self.err, needle);
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Ends stdin and waits for the exit code.
    fn finish(mut self) -> i32 {
        drop(self.stdin.take());
        let mut child = self.child;
        within("the client to exit", move || child.wait().expect("wait")).code().unwrap_or(-1)
    }
}

#[test]
fn client_reconnects_across_a_killed_and_restarted_server() {
    let first = start(&["echo", "127.0.0.1:0"], "listening on ");
    let url = first.addr.clone();
    let port_addr = url.trim_start_matches("ws://").trim_end_matches('/').to_owned();
    let args: Vec<String> =
        ["--reconnect", "--reconnect-delay", "10ms", "--reconnect-max-delay", "100ms", &url].map(String::from).to_vec();
    let mut client = Interactive::start(&args);
    client.send_line("one");
    assert_eq!(recv(&client.out, "the echo of one"), "one");

    // Killed (SIGKILL): no Close, the connection just drops.
    drop(first);
    let line = client.wait_err("reconnecting in");
    assert!(line.contains("attempt 1"), "{line}");
    // Typed while no server listens: kept, in order.
    client.send_line("two");
    client.send_line("three");
    let second = start(&["echo", &port_addr], "listening on ");
    assert_eq!(second.addr, url, "started again on the same port");
    client.wait_err("reconnected (connection 2)");
    assert_eq!(recv(&client.out, "the echo of two"), "two");
    assert_eq!(recv(&client.out, "the echo of three"), "three");
    client.send_line("four");
    assert_eq!(recv(&client.out, "the echo of four"), "four");
    let out = client.out.clone();
    let code = client.finish();
    assert_eq!(code, 0);
    // Nothing twice.
    assert_eq!(out.try_iter().collect::<Vec<_>>(), Vec::<String>::new());
}

#[test]
fn client_reconnect_gives_up_with_exit_code_3() {
    // Stdin stays open (an empty one would end the client at once: a
    // Close with nothing to deliver first stops it).
    let dead = format!("ws://{}/", dead_addr());
    let args = ["--reconnect", "--reconnect-delay", "1ms", "--reconnect-attempts", "3", &dead].map(String::from);
    let client = Interactive::start(&args);
    let line = client.wait_err("gave up reconnecting");
    assert!(line.contains(&dead), "{line}");
    let code = client.finish();
    assert_eq!(code, 3);
}

#[test]
fn client_exit_codes() {
    let dead = format!("ws://{}/", dead_addr());
    let (code, _, err) = client(vec![dead], Vec::new());
    assert_eq!(code, 3, "{err}");

    let (code, _, err) = client(vec!["http://nope".into()], Vec::new());
    assert_eq!(code, 2, "{err}");

    // The echo server refuses a foreign Origin with 403.
    let echo = start(&["echo", "127.0.0.1:0", "--origin", "same-host"], "listening on ");
    let args = vec!["--header".into(), "Origin: http://evil.example".into(), echo.addr.clone()];
    let (code, _, err) = client(args, Vec::new());
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("403"), "{err}");
    // ... and its answer says how to allow it.
    assert!(err.contains("--origin http://evil.example"), "{err}");

    // A server that closes with 4000 gives exit code 5 and prints it.
    init_log();
    let listener = syncws::Listener::bind("127.0.0.1:0").unwrap();
    let running = listener.spawn(|server| server.set_callback_ws(Box::new(Closer))).unwrap();
    let (code, _, err) = client(vec![format!("ws://{}/", running.local_addr())], b"hi\n".to_vec());
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("closed: 4000 go away"), "{err}");
    running.shutdown();

    // A server that drops the connection without a Close gives 6.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dropper = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let ws = syncws::accept(stream).unwrap();
        drop(ws);
    });
    let (code, _, err) = client(vec![format!("ws://{addr}/")], Vec::new());
    dropper.join().unwrap();
    assert_eq!(code, 6, "{err}");
}

/// A self-signed certificate for localhost and 127.0.0.1 and its key, as
/// PEM files in a fresh folder named after `test`: (folder, cert, key).
/// `syncws echo --help` warns about the Origin check where a newcomer
/// looks first.
#[test]
fn echo_help_explains_the_origin_check() {
    let out = within("syncws echo --help", || Command::new(BIN).args(["echo", "--help"]).output().expect("run syncws"));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needed in ["403", "file://", "--origin any", "--origin http://localhost:3000", "127.0.0.1"] {
        assert!(help.contains(needed), "{needed:?} missing from:\n{help}");
    }
}

fn tls_files(test: &str) -> (std::path::PathBuf, String, String) {
    tls_files_for(test, &["localhost", "127.0.0.1"])
}

/// [`tls_files`] for a certificate naming only `names`.
fn tls_files_for(test: &str, names: &[&str]) -> (std::path::PathBuf, String, String) {
    let made = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let dir = std::env::temp_dir().join(format!("syncws-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned());
    (dir, cert, key)
}

#[test]
fn echo_over_tls_with_a_pem_certificate_and_a_client_trusting_it() {
    let (dir, cert, key) = tls_files("tls-test");
    let echo = start(&["echo", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key], "listening on ");
    assert!(echo.addr.starts_with("wss://"), "{}", echo.addr);
    let args = vec!["--tls-ca".into(), cert.clone(), echo.addr.clone()];
    let (code, out, err) = client(args, b"over tls\n".to_vec());
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "over tls\n");

    // The built-in roots do not trust a self-signed certificate.
    let (code, _, err) = client(vec![echo.addr.clone()], Vec::new());
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("certificate"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `syncws bench ARGS`; returns (exit code, its JSON line, stderr).
fn bench(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    within("syncws bench", move || {
        let out = Command::new(BIN).arg("bench").args(&args).output().expect("run syncws bench");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = stdout.lines().find(|l| l.starts_with('{')).unwrap_or_default().to_owned();
        (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

#[test]
fn bench_measures_a_wss_server() {
    let (dir, cert, key) = tls_files("bench-tls");
    let echo = start(&["echo", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key], "listening on ");
    let common = ["--url", &echo.addr, "--conns", "2", "--duration", "0.3", "--warmup", "0.1"];
    for mode in ["ping-pong", "pipelined"] {
        let mut args = common.to_vec();
        args.extend(["--tls-ca", &cert, "--mode", mode]);
        let (code, json, err) = bench(&args);
        assert_eq!(code, 0, "{mode}: {json} {err}");
        assert!(json.contains("\"connected\":2,") && json.contains("\"errors\":0,"), "{mode}: {json}");
        assert!(!json.contains("\"msgs\":0,"), "{mode}: no message echoed: {json}");
    }
    // Without --tls-ca, the built-in roots do not trust the certificate:
    // every connection fails, and says why.
    let (code, json, _) = bench(&common);
    assert_eq!(code, 1, "{json}");
    assert!(json.contains("\"connected\":0,") && json.contains("certificate"), "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

struct Closer;

impl syncws::WsTrait for Closer {
    fn on_open(&mut self, shake: syncws::WsHandshake) -> syncws::Result<Option<syncws::WsOption>> {
        shake.sender.close(CloseCode(4000), "go away")?;
        Ok(None)
    }
    fn on_message(&mut self, _msg: OwnedMessage) -> syncws::Result<()> {
        Ok(())
    }
}

#[test]
fn chat_serves_its_page_and_broadcasts() {
    let chat = start(&["chat", "127.0.0.1:0"], "chat on http://");
    let addr = chat.addr.trim_end_matches('/').to_owned();

    let a = addr.clone();
    let page = within("the chat page", move || {
        let mut s = TcpStream::connect(&a).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        let mut page = String::new();
        s.read_to_string(&mut page).unwrap();
        page
    });
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("new WebSocket("), "{page}");

    let url = format!("ws://{addr}/ws");
    let (first, second) = within("a broadcast", move || {
        let config = Config::default().handshake_timeout(WAIT);
        let mut alice = Client::builder().url(&url).unwrap().config(config.clone()).connect().unwrap();
        let next_text = |c: &mut Client| loop {
            if let OwnedMessage::Text(t) = c.read().unwrap() {
                return t;
            }
        };
        assert!(next_text(&mut alice).contains("joined"));
        let mut bob = Client::builder().url(&url).unwrap().config(config).connect().unwrap();
        assert!(next_text(&mut bob).contains("joined"));
        assert!(next_text(&mut alice).contains("joined"));
        bob.send(OwnedMessage::Text("hello room".into())).unwrap();
        (next_text(&mut alice), next_text(&mut bob))
    });
    assert!(first.ends_with(": hello room"), "{first}");
    assert_eq!(first, second);
}

/// `GET path` over plain HTTP to `addr` (`host:port`); returns the status
/// line, the head and the body.
fn http_get(addr: &str, path: &str) -> (String, String, String) {
    let (addr, path) = (addr.to_owned(), path.to_owned());
    let answer = within("an HTTP answer", move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    });
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {answer:?}"));
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, head.to_owned(), body.to_owned())
}

/// The value of the sample `name` (with its labels, if any) in a
/// Prometheus text `body`.
fn sample(body: &str, name: &str) -> u64 {
    let line = body.lines().find(|l| l.strip_prefix(name).is_some_and(|v| v.starts_with(' ')));
    let line = line.unwrap_or_else(|| panic!("no sample {name} in\n{body}"));
    line.rsplit(' ').next().unwrap().parse().unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[test]
fn servers_answer_metrics_only_with_the_flag() {
    let echo = start(&["echo", "127.0.0.1:0", "--metrics"], "listening on ");
    let addr = echo.addr.trim_start_matches("ws://").to_owned();
    // One WebSocket connection, open while the page is scraped: its echo
    // came back, so the server has counted it and its message.
    let url = echo.addr.clone();
    let client = within("an echo", move || {
        let mut c = Client::connect(&url).unwrap();
        c.send(OwnedMessage::Text("counted".into())).unwrap();
        assert_eq!(c.read().unwrap(), OwnedMessage::Text("counted".into()));
        c
    });
    let (status, head, body) = http_get(&addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("# TYPE syncws_connections_open gauge\n"), "{body}");
    assert!(body.contains("# TYPE syncws_websockets_closed_total counter\n"), "{body}");
    // The client's connection and the scrape's.
    assert_eq!(sample(&body, "syncws_connections_accepted_total"), 2);
    assert_eq!(sample(&body, "syncws_connections_open"), 2);
    assert_eq!(sample(&body, "syncws_websockets_opened_total"), 1);
    assert_eq!(sample(&body, "syncws_websockets_open"), 1);
    assert_eq!(sample(&body, "syncws_received_messages_total"), 1);
    assert_eq!(sample(&body, "syncws_connections_refused_total{reason=\"origin\"}"), 0);
    assert_eq!(sample(&body, "syncws_websockets_closed_total{code=\"1000\"}"), 0);
    // Any other path is still a WebSocket-only endpoint.
    assert!(http_get(&addr, "/").0.starts_with("HTTP/1.1 426"));
    drop(client);
    // An upgrade is one on any path, /metrics included.
    let url = format!("{}/metrics", echo.addr);
    within("an echo on /metrics", move || {
        let mut c = Client::connect(&url).unwrap();
        c.send(OwnedMessage::Text("upgraded".into())).unwrap();
        assert_eq!(c.read().unwrap(), OwnedMessage::Text("upgraded".into()));
    });

    // Without the flag, /metrics is not served.
    let plain = start(&["echo", "127.0.0.1:0"], "listening on ");
    let (status, _, body) = http_get(plain.addr.trim_start_matches("ws://"), "/metrics");
    assert!(status.starts_with("HTTP/1.1 426"), "{status}");
    assert!(!body.contains("syncws_"), "{body}");

    // The chat: /metrics first, then its own page.
    let chat = start(&["chat", "127.0.0.1:0", "--metrics"], "chat on http://");
    let addr = chat.addr.trim_end_matches('/');
    let (status, _, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(sample(&body, "syncws_connections_open"), 1);
    let (status, _, body) = http_get(addr, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("new WebSocket("), "{body}");
    assert!(http_get(addr, "/nothing").0.starts_with("HTTP/1.1 404"));

    // Every other server takes the flag too: the pub/sub server answers
    // /metrics before its topics at `/`; exec, the bridge and the proxy
    // answer it where they would otherwise say 426. Each counts the
    // scrape's own connection.
    let dead = dead_addr().to_string();
    let dead_ws = format!("ws://{dead}");
    let others: [(&[&str], &str); 4] = [
        (&["pubsub", "127.0.0.1:0", "--metrics"], "pubsub on "),
        (&["exec", "127.0.0.1:0", "--metrics", "--", "cat"], "listening on "),
        (&["bridge", "ws2tcp", "--listen", "127.0.0.1:0", "--to", &dead, "--metrics"], "listening on "),
        (&["proxy", "--listen", "127.0.0.1:0", "-u", &dead_ws, "--metrics"], "listening on "),
    ];
    for (args, prefix) in others {
        let server = start(args, prefix);
        let addr = server.addr.trim_start_matches("ws://").trim_end_matches('/').to_owned();
        let (status, head, body) = http_get(&addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{args:?}: {head}");
        assert_eq!(sample(&body, "syncws_connections_open"), 1, "{args:?}");
        let (status, _, body) = http_get(&addr, "/");
        match args[0] {
            "pubsub" => assert!(status == "HTTP/1.1 200 OK" && body.starts_with("{\"topics\":"), "{status} {body}"),
            _ => assert!(status.starts_with("HTTP/1.1 426"), "{args:?}: {status}"),
        }
    }
}

#[test]
fn proxy_from_a_toml_file_and_bridges_from_the_command_line() {
    let echo = start(&["echo", "127.0.0.1:0"], "listening on ");
    let file = std::env::temp_dir().join(format!("syncws-proxy-test-{}.toml", std::process::id()));
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nx_forwarded_for = true\n\n[[upstream]]\nurl = \"{}\"\nweight = 2\n",
        echo.addr
    );
    std::fs::write(&file, toml).unwrap();
    let proxy = start(&["proxy", "--config", file.to_str().unwrap()], "listening on ");
    let _ = std::fs::remove_file(&file);
    // The client closes right after its line: the proxy's close handshake
    // is end to end, so the echo still comes back before the Close.
    let (code, out, err) = client(vec![proxy.addr.clone()], b"through the proxy\n".to_vec());
    assert_eq!((code, out.as_str()), (0, "through the proxy\n"), "{err}");

    // tcp2ws -> echo from the command line: TCP bytes come back, EOF too.
    let tcp2ws = start(&["bridge", "tcp2ws", "--listen", "127.0.0.1:0", "--to", &echo.addr], "listening on tcp ");
    let addr = tcp2ws.addr.clone();
    let back = within("tcp2ws from the binary", move || {
        let tcp = TcpStream::connect(&addr).unwrap();
        write_then_eof(tcp.try_clone().unwrap(), b"raw bytes".to_vec());
        read_to_eof(tcp)
    });
    assert_eq!(back, b"raw bytes");

    // ws2tcp with its target down answers 502.
    let dead = dead_addr().to_string();
    let ws2tcp = start(&["bridge", "ws2tcp", "--listen", "127.0.0.1:0", "--to", &dead], "listening on ");
    let (code, _, err) = client(vec![ws2tcp.addr.clone()], Vec::new());
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("502"), "{err}");
}

/// `syncws echo` over TLS on 127.0.0.1 port 0, and its URL written with
/// `localhost` (a DNS name, as upstreams usually are): (server, URL).
fn tls_echo(cert: &str, key: &str) -> (Server, String) {
    let echo = start(&["echo", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key], "listening on ");
    let url = echo.addr.replace("wss://127.0.0.1:", "wss://localhost:");
    assert!(url.starts_with("wss://localhost:"), "{}", echo.addr);
    (echo, url)
}

#[test]
fn proxy_dials_a_wss_upstream_over_tls_trusting_upstream_tls_ca() {
    let (dir, cert, key) = tls_files("proxy-wss");
    let (_echo, upstream) = tls_echo(&cert, &key);

    // From the command line: a plain ws:// client, through the proxy, to
    // the wss:// upstream and back.
    let args = ["proxy", "--listen", "127.0.0.1:0", "-u", &upstream, "--upstream-tls-ca", &cert];
    let proxy = start(&args, "listening on ");
    assert!(proxy.addr.starts_with("ws://"), "{}", proxy.addr);
    let (code, out, err) = client(vec![proxy.addr.clone()], b"through the proxy over tls\n".to_vec());
    assert_eq!((code, out.as_str()), (0, "through the proxy over tls\n"), "{err}");

    // From a file whose upstream_tls_ca is relative to the file's folder.
    let file = dir.join("proxy.toml");
    let toml =
        format!("listen = \"127.0.0.1:0\"\nupstream_tls_ca = \"cert.pem\"\n\n[[upstream]]\nurl = \"{upstream}\"\n");
    std::fs::write(&file, toml).unwrap();
    let proxy = start(&["proxy", "--config", file.to_str().unwrap()], "listening on ");
    let (code, out, err) = client(vec![format!("{}/some/path", proxy.addr)], b"from the file\n".to_vec());
    assert_eq!((code, out.as_str()), (0, "from the file\n"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn proxy_without_trust_in_a_wss_upstream_answers_502_and_logs_why() {
    let (dir, cert, key) = tls_files("proxy-wss-untrusted");
    let (_echo, upstream) = tls_echo(&cert, &key);
    // No --upstream-tls-ca: the built-in roots do not trust the upstream's
    // self-signed certificate.
    let child = Command::new(BIN)
        .args(["proxy", "--listen", "127.0.0.1:0", "-u", &upstream])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run syncws proxy");
    let mut proxy = listening(child, "listening on ");
    // 502, not the upstream's plaintext 400 that a ws:// fallback would
    // bring back (the TLS echo answers a plaintext request with 400).
    let (code, _, err) = client(vec![proxy.addr.clone()], b"never echoed\n".to_vec());
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("502"), "{err}");

    let stderr = proxy.child.stderr.take().unwrap();
    let _ = proxy.child.kill();
    let _ = proxy.child.wait();
    let log = within("the proxy's log", move || {
        let mut log = String::new();
        BufReader::new(stderr).read_to_string(&mut log).expect("read the proxy's stderr");
        log
    });
    assert!(log.contains(&format!("cannot reach {upstream}/")), "{log}");
    assert!(log.contains("certificate") && log.contains("--upstream-tls-ca"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn a_termination_signal_closes_every_connection_with_1001() {
    for (args, prefix) in [(["echo", "127.0.0.1:0"], "listening on "), (["chat", "127.0.0.1:0"], "chat on ")] {
        let mut server = start(&args, prefix);
        let url = match args[0] {
            "chat" => format!("ws://{}/ws", server.addr.trim_start_matches("http://").trim_end_matches('/')),
            _ => server.addr.clone(),
        };
        let clients: Vec<Client> = (0..3)
            .map(|_| {
                let url = url.clone();
                within("a connection", move || {
                    let mut ws = Client::connect(&url).expect("connect");
                    ws.send(OwnedMessage::Text("still there?".into())).unwrap();
                    ws.read().expect("an echo or a chat line");
                    ws
                })
            })
            .collect();
        let pid = server.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("run kill").success());
        for mut ws in clients {
            let close = within("the 1001 close", move || loop {
                match ws.read() {
                    Ok(OwnedMessage::Close(c)) => return c,
                    Ok(_) => continue,
                    Err(e) => panic!("expected a close frame, got {e}"),
                }
            });
            assert_eq!(close.map(|c| c.status_code), Some(CloseCode::AWAY.0), "{args:?}");
        }
        // Bounded wait for the exit: 600 × 50 ms.
        let code = (0..600).find_map(|_| {
            let status = server.child.try_wait().expect("try_wait");
            if status.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            status.map(|s| s.code())
        });
        assert_eq!(code, Some(Some(0)), "{args:?} exits cleanly after the signal");
    }
}

/// Starts `syncws ARGS` under `ulimit -n NOFILE`, like [`start`]; its log
/// (stderr) lines arrive on the returned receiver.
#[cfg(target_os = "linux")]
fn start_limited(args: &[&str], prefix: &'static str, nofile: u32) -> (Server, crossbeam_channel::Receiver<String>) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run syncws under ulimit");
    let (tx, log) = crossbeam_channel::unbounded();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    (listening(child, prefix), log)
}

/// Polls `f` every 50 ms for up to 20 s; true once it returned true.
#[cfg(target_os = "linux")]
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    (0..400).any(|_| {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        false
    })
}

#[cfg(target_os = "linux")]
#[test]
fn servers_out_of_descriptors_turn_the_burst_away_and_serve_again() {
    use std::time::Duration;
    let host_port = |addr: &str| addr.trim_start_matches("ws://").trim_end_matches('/').to_owned();

    // `syncws echo` (a Listener): the burst past 40 descriptors gets 503s.
    let (echo, echo_log) = start_limited(&["echo", "127.0.0.1:0"], "listening on ", 40);
    let addr = host_port(&echo.addr);
    let burst: Vec<TcpStream> = (0..80)
        .filter_map(|_| {
            let mut s = TcpStream::connect(&addr).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let req = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
            let _ = s.write_all(req.as_bytes());
            Some(s)
        })
        .collect();
    let answers: Vec<String> = burst
        .iter()
        .map(|mut s| {
            let mut head = [0u8; 12];
            match s.read_exact(&mut head) {
                Ok(()) => String::from_utf8_lossy(&head).into_owned(),
                Err(_) => String::new(),
            }
        })
        .collect();
    let count = |status: &str| answers.iter().filter(|a| a.as_str() == status).count();
    assert!(count("HTTP/1.1 101") > 0 && count("HTTP/1.1 503") > 0, "{answers:?}");
    drop(burst);
    let url = echo.addr.clone();
    assert!(
        eventually(|| {
            let Ok(mut ws) = Client::connect(&url) else { return false };
            ws.send(OwnedMessage::Text("back?".into())).is_ok()
                && matches!(ws.read(), Ok(OwnedMessage::Text(t)) if t == "back?")
        }),
        "syncws echo did not serve again"
    );

    // `syncws bridge tcp2ws` (a TcpServer): the burst is closed, not answered.
    let (bridge, bridge_log) =
        start_limited(&["bridge", "tcp2ws", "--listen", "127.0.0.1:0", "--to", &echo.addr], "listening on tcp ", 40);
    let burst: Vec<TcpStream> = (0..80).filter_map(|_| TcpStream::connect(&bridge.addr).ok()).collect();
    for mut s in &burst {
        let _ = s.write_all(b"x");
    }
    // Long enough for the bridge to meet its limit.
    let mut s = &burst[burst.len() - 1];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.read(&mut [0u8; 1]);
    drop(burst);
    let bridge_addr = bridge.addr.clone();
    assert!(
        eventually(|| {
            let Ok(mut tcp) = TcpStream::connect(&bridge_addr) else { return false };
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut back = [0u8; 5];
            tcp.write_all(b"again").is_ok() && tcp.read_exact(&mut back).is_ok() && &back == b"again"
        }),
        "syncws bridge tcp2ws did not serve again"
    );

    drop((echo, bridge));
    for (name, log) in [("echo", echo_log), ("tcp2ws", bridge_log)] {
        // Both processes are gone: the log ends at their stderr's EOF.
        let mut lines = Vec::new();
        while let Ok(line) = log.recv_timeout(WAIT) {
            lines.push(line);
        }
        assert!(lines.len() < 50, "{name}: {} log lines: {lines:#?}", lines.len());
        assert!(lines.iter().any(|l| l.contains("out of descriptors")), "{name}: no summary line: {lines:#?}");
    }
}

/// The `Sec-WebSocket-Extensions` answer to a client offering
/// permessage-deflate at `url`.
fn deflate_answer(url: &str) -> Option<String> {
    let config = Config::default().deflate(Some(syncws::DeflateConfig::default())).handshake_timeout(WAIT);
    let c = Client::builder().url(url).unwrap().config(config).connect().expect("connects");
    c.response().header("sec-websocket-extensions").map(str::to_owned)
}

/// Every server of the command accepts permessage-deflate when offered;
/// `--no-deflate` turns it off. (The proxy: below, per hop.)
#[test]
fn servers_accept_deflate_unless_told_not_to() {
    let tcp = tcp_echo().to_string();
    for (args, prefix, path) in [
        (vec!["echo", "127.0.0.1:0"], "listening on ", "/"),
        (vec!["chat", "127.0.0.1:0"], "chat on ", "/ws"),
        (vec!["bridge", "ws2tcp", "--listen", "127.0.0.1:0", "--to", &tcp], "listening on ", "/"),
    ] {
        for no_deflate in [false, true] {
            let mut args = args.clone();
            if no_deflate {
                args.push("--no-deflate");
            }
            let server = start(&args, prefix);
            let host = server.addr.trim_start_matches("http://").trim_start_matches("ws://").trim_end_matches('/');
            let answer = deflate_answer(&format!("ws://{host}{path}"));
            if no_deflate {
                assert_eq!(answer, None, "{args:?}");
            } else {
                assert!(answer.as_deref().is_some_and(|a| a.starts_with("permessage-deflate")), "{args:?}: {answer:?}");
            }
        }
    }
}

/// A server made by hand that reports the upgrade's offer and the first
/// byte of the first frame (FIN, RSV, opcode) after answering with
/// permessage-deflate if it was offered.
fn offer_recorder() -> (String, crossbeam_channel::Receiver<(Option<String>, u8)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut b).unwrap_or(0) != 1 {
                    break;
                }
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let offer = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: ").map(str::to_owned));
            let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap_or("").trim().to_owned();
            let mut resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n",
                syncws::handshake::accept_key(&key)
            );
            if offer.is_some() {
                resp.push_str("Sec-WebSocket-Extensions: permessage-deflate\r\n");
            }
            resp.push_str("\r\n");
            let _ = s.write_all(resp.as_bytes());
            let mut first = [0u8; 1];
            let _ = s.read_exact(&mut first);
            let _ = tx.send((offer, first[0]));
        }
    });
    (addr, rx)
}

/// Every client side of the command offers permessage-deflate and
/// compresses a long line; `--no-deflate` turns it off.
#[test]
fn clients_offer_deflate_unless_told_not_to() {
    let (addr, rx) = offer_recorder();
    let line = format!("{}\n", "a long and compressible line, ".repeat(100));
    for no_deflate in [false, true] {
        let mut args = vec![format!("ws://{addr}/")];
        if no_deflate {
            args.push("--no-deflate".into());
        }
        let _ = client(args, line.clone().into_bytes());
        let (offer, first) = recv(&rx, "the client's upgrade and first frame");
        if no_deflate {
            assert_eq!((offer, first), (None, 0x81));
        } else {
            assert!(offer.is_some_and(|o| o.contains("permessage-deflate")));
            assert_eq!(first, 0xc1, "FIN, RSV1, text");
        }
    }
    // tcp2ws: the bridge's WebSocket side.
    for no_deflate in [false, true] {
        let mut args = vec!["bridge", "tcp2ws", "--listen", "127.0.0.1:0", "--to"];
        let url = format!("ws://{addr}/");
        args.push(&url);
        if no_deflate {
            args.push("--no-deflate");
        }
        let bridge = start(&args, "listening on tcp ");
        let mut tcp = TcpStream::connect(&bridge.addr).unwrap();
        tcp.write_all(line.as_bytes()).unwrap();
        let (offer, first) = recv(&rx, "the bridge's upgrade and first frame");
        assert_eq!(offer.is_some(), !no_deflate, "tcp2ws --no-deflate={no_deflate}");
        assert_eq!(first, if no_deflate { 0x82 } else { 0xc2 }, "FIN, RSV1 as negotiated, binary");
    }
}

/// The proxy negotiates permessage-deflate on each hop by itself: with
/// the client, and with the upstream.
#[test]
fn proxy_negotiates_deflate_per_hop() {
    let (upstream, rx) = offer_recorder();
    let proxy =
        start(&["proxy", "--listen", "127.0.0.1:0", "--upstream", &format!("ws://{upstream}")], "listening on ");
    // A client without deflate: the upstream hop still compresses.
    let mut c = Client::connect(&proxy.addr).unwrap();
    assert_eq!(c.response().header("sec-websocket-extensions"), None);
    c.send(OwnedMessage::Text("compressible ".repeat(200))).unwrap();
    let (offer, first) = recv(&rx, "the proxy's upgrade upstream");
    assert!(offer.is_some_and(|o| o.contains("permessage-deflate")));
    assert_eq!(first, 0xc1, "the proxy compressed on its upstream hop");
    // A client with deflate, an upstream without (--no-deflate echo).
    let echo = start(&["echo", "127.0.0.1:0", "--no-deflate"], "listening on ");
    let proxy = start(&["proxy", "--listen", "127.0.0.1:0", "--upstream", &echo.addr], "listening on ");
    let config = Config::default().deflate(Some(syncws::DeflateConfig::default()));
    let mut c = Client::builder().url(&proxy.addr).unwrap().config(config).connect().unwrap();
    assert!(c.response().header("sec-websocket-extensions").is_some_and(|a| a.starts_with("permessage-deflate")));
    let big = OwnedMessage::Text("compressible ".repeat(200));
    c.send(big.clone()).unwrap();
    assert_eq!(c.read().unwrap(), big);
}
