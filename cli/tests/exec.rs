//! `syncws exec` with real programs (`cat`, `sh -c`, `env`, `head`): the
//! messages, the environment, exit codes, reaping and process groups,
//! `--max-forks`, backpressure both ways, `--dir` and `--static`
//! traversal attempts, a Unix socket. Loopback only; every wait is a
//! bounded poll or a watchdog; every process started is killed.
#![cfg(target_os = "linux")]

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use support::*;
use syncws::{Client, CloseCode, CloseData, Config, Error, OwnedMessage};

const BIN: &str = env!("CARGO_BIN_EXE_syncws");

/// A `syncws` server process, killed when dropped; its log lines arrive
/// on `log`.
struct Server {
    child: Child,
    /// `ws://127.0.0.1:PORT`
    url: String,
    log: Receiver<String>,
}

impl Server {
    fn host_port(&self) -> String {
        self.url.trim_start_matches("ws://").trim_end_matches('/').to_owned()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The log lines so far.
    fn log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `syncws ARGS` with `env` added, and waits for its address line.
fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run syncws");
    let (tx, log) = crossbeam_channel::unbounded();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            eprintln!("server: {line}");
            let _ = tx.send(line);
        }
    });
    let stdout = child.stdout.take().unwrap();
    let line = within("the server's address line", move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read stdout");
        line
    });
    // `listening on ws://ADDR`, or the chat's `chat on http://ADDR/`.
    let line = line.trim();
    let url = line
        .strip_prefix("listening on ")
        .or_else(|| line.strip_prefix("chat on "))
        .or_else(|| line.strip_prefix("pubsub on "))
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_owned();
    Server { child, url, log }
}

fn exec(args: &[&str]) -> Server {
    let mut all = vec!["exec", "127.0.0.1:0"];
    all.extend_from_slice(args);
    start(&all, &[])
}

fn config() -> Config {
    Config::default().handshake_timeout(WAIT).idle_timeout(Some(WAIT)).write_timeout(WAIT)
}

fn connect(url: &str) -> syncws::Result<Client> {
    Client::builder().url(url)?.config(config()).connect()
}

/// Connects, sends `msgs`, and reads until the server's Close (the
/// program exits by itself): the messages and the Close.
fn session(url: &str, msgs: Vec<OwnedMessage>) -> (Vec<OwnedMessage>, Option<CloseData>) {
    talk(url, msgs, false)
}

/// [`session`], the client closing after its messages, as `syncws client`
/// does at the end of its input: the reply comes after the program's
/// last output.
fn session_closing(url: &str, msgs: Vec<OwnedMessage>) -> (Vec<OwnedMessage>, Option<CloseData>) {
    talk(url, msgs, true)
}

fn talk(url: &str, msgs: Vec<OwnedMessage>, close: bool) -> (Vec<OwnedMessage>, Option<CloseData>) {
    let url = url.to_owned();
    within("a session", move || {
        let mut ws = connect(&url).expect("connect");
        for m in msgs {
            if ws.send(m).is_err() {
                break;
            }
        }
        if close {
            ws.close(CloseCode::NORMAL, "").expect("send the close");
        }
        read_to_close(&mut ws)
    })
}

fn read_to_close(ws: &mut Client) -> (Vec<OwnedMessage>, Option<CloseData>) {
    let mut got = Vec::new();
    loop {
        match ws.read() {
            Ok(OwnedMessage::Close(c)) => return (got, c),
            Ok(m) => got.push(m),
            Err(e) => panic!("expected a close, got {e} after {} messages", got.len()),
        }
    }
}

fn text(s: &str) -> OwnedMessage {
    OwnedMessage::Text(s.into())
}

fn code(close: &Option<CloseData>) -> u16 {
    close.as_ref().map_or(0, |c| c.status_code)
}

/// Polls `f` every 20 ms for up to [`WAIT`]; panics naming `what`.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (pid, state, ppid, pgrp) of every process, from /proc.
fn processes() -> Vec<(i32, char, i32, i32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let f: Vec<&str> = rest.split(' ').collect();
        if f.len() < 3 {
            continue;
        }
        let state = f[0].chars().next().unwrap_or('?');
        out.push((pid, state, f[1].parse().unwrap_or(0), f[2].parse().unwrap_or(0)));
    }
    out
}

/// The children of `pid`, zombies included.
fn children(pid: i32) -> Vec<(i32, char)> {
    processes().into_iter().filter(|p| p.2 == pid).map(|p| (p.0, p.1)).collect()
}

/// Processes whose command line is exactly `args`.
fn running(args: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    processes()
        .into_iter()
        .map(|p| p.0)
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok() == Some(want.clone()))
        .collect()
}

/// A number of seconds for `sleep` that no other test uses: finds this
/// test's leftovers among all processes.
fn marker(n: u32) -> String {
    format!("{}{n}", 900_000 + std::process::id() % 100_000)
}

/// A fresh folder under the temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("syncws-exec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Sends a raw HTTP request and returns the whole answer.
fn http(host_port: &str, request: &str) -> String {
    let (host_port, request) = (host_port.to_owned(), request.to_owned());
    within("an HTTP answer", move || {
        let mut s = TcpStream::connect(&host_port).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

fn get(host_port: &str, path: &str) -> String {
    http(host_port, &format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"))
}

fn status(answer: &str) -> u16 {
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn lines_and_messages_through_cat_and_sh() {
    let server = exec(&["--max-message-size", "1000", "--", "cat"]);
    // A message with newlines is written as is, then one newline.
    let (got, close) = session_closing(&server.url, vec![text("hello"), text("two\nlines"), text(""), text("héllo")]);
    assert_eq!(got, [text("hello"), text("two"), text("lines"), text(""), text("héllo")]);
    assert_eq!(code(&close), 1000);

    // A 2500-byte line comes back in pieces of max_message_size; output
    // that is not UTF-8 as a binary message; a last line without newline.
    let script = "head -c 2500 /dev/zero | tr '\\0' x; echo; printf 'ok\\n\\377\\376\\nend'";
    let server = exec(&["--max-message-size", "1000", "--", "sh", "-c", script]);
    let (got, close) = session(&server.url, vec![]);
    let x = |n| text(&"x".repeat(n));
    assert_eq!(got, [x(1000), x(1000), x(500), text("ok"), OwnedMessage::Binary(vec![0xff, 0xfe]), text("end")]);
    assert_eq!(code(&close), 1000);
}

#[test]
fn no_shell_between_the_server_and_the_program() {
    // Each argument reaches the program as it is: no expansion, no
    // splitting, no command substitution, no second command.
    let args = ["$HOME", "*", "a;echo injected", "`id`", "$(id)", "two  spaces"];
    let mut all = vec!["--", "printf", "%s|"];
    all.extend_from_slice(&args);
    let server = exec(&all);
    let (got, close) = session(&server.url, vec![]);
    assert_eq!(got, [text("$HOME|*|a;echo injected|`id`|$(id)|two  spaces|")]);
    assert_eq!(code(&close), 1000);
}

#[test]
fn dir_and_a_command_are_exclusive_and_one_is_needed() {
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        within("syncws exec refusing its arguments", move || {
            let out = Command::new(BIN).args(&args).output().expect("run syncws");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let dir = std::env::temp_dir().to_string_lossy().into_owned();
    let (status, out, err) = run(&["exec", "127.0.0.1:0", "--dir", &dir, "--", "cat"]);
    assert_eq!((status, out.as_str()), (Some(2), ""), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    let (status, out, err) = run(&["exec", "127.0.0.1:0"]);
    assert_eq!((status, out.as_str()), (Some(2), ""), "{err}");
    assert!(err.contains("--dir") && err.contains("COMMAND"), "{err}");
}

#[test]
fn the_pinned_defaults_are_the_ones_documented() {
    let help = within("syncws exec --help", || {
        let out = Command::new(BIN).args(["exec", "--help"]).output().expect("run syncws");
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    // The text of one option, up to the next one.
    let option = |name: &str| {
        let start = help.find(&format!("      --{name} <")).unwrap_or_else(|| panic!("--{name} missing: {help}"));
        let rest = &help[start + 8..];
        let end = rest.find("\n      --").or_else(|| rest.find("\n  -")).unwrap_or(rest.len());
        rest[..end].to_owned()
    };
    assert!(option("max-forks").contains("[default: 1000]"), "{}", option("max-forks"));
    assert!(option("kill-grace").contains("[default: 5s]"), "{}", option("kill-grace"));
}

#[test]
fn binary_mode_passes_raw_bytes_both_ways() {
    let server = exec(&["--binary", "--", "cat"]);
    let data = random_bytes(300_000, 7);
    let url = server.url.clone();
    let sent = data.clone();
    let back = within("binary echo", move || {
        let mut ws = connect(&url).unwrap();
        for piece in sent.chunks(70_000) {
            ws.send(OwnedMessage::Binary(piece.to_vec())).unwrap();
        }
        let mut back = Vec::new();
        while back.len() < sent.len() {
            match ws.read().unwrap() {
                OwnedMessage::Binary(b) => {
                    assert!(b.len() <= 64 << 10, "a chunk of {} bytes", b.len());
                    back.extend_from_slice(&b);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        ws.close(CloseCode::NORMAL, "").unwrap();
        let (rest, close) = read_to_close(&mut ws);
        assert!(rest.is_empty());
        assert_eq!(code(&close), 1000);
        back
    });
    assert_eq!(checksum(&back), checksum(&data));
}

#[test]
fn the_program_gets_the_cgi_environment_and_nothing_else() {
    let server = start(
        &["exec", "127.0.0.1:0", "--passenv", "SYNCWS_PASSED", "--", "env"],
        &[("SYNCWS_PASSED", "yes"), ("SYNCWS_SECRET", "leak")],
    );
    let url = format!("{}/some/path%20x?a=1&b=2", server.url);
    let (got, close) = within("env", move || {
        let mut ws = Client::builder()
            .url(&url)
            .unwrap()
            .header("X-Test-Header", "t1")
            .header("X_Sneaky", "no")
            .header("Proxy", "http://evil")
            .config(config())
            .connect()
            .unwrap();
        read_to_close(&mut ws)
    });
    assert_eq!(code(&close), 1000);
    let vars: Vec<String> = got
        .into_iter()
        .map(|m| match m {
            OwnedMessage::Text(t) => t,
            other => panic!("{other:?}"),
        })
        .collect();
    let port = server.host_port().rsplit(':').next().unwrap().to_owned();
    for want in [
        "REMOTE_ADDR=127.0.0.1".to_owned(),
        "SERVER_NAME=127.0.0.1".to_owned(),
        format!("SERVER_PORT={port}"),
        "SERVER_PROTOCOL=HTTP/1.1".to_owned(),
        "REQUEST_METHOD=GET".to_owned(),
        "REQUEST_URI=/some/path%20x?a=1&b=2".to_owned(),
        "PATH_INFO=/some/path x".to_owned(),
        "QUERY_STRING=a=1&b=2".to_owned(),
        "HTTP_X_TEST_HEADER=t1".to_owned(),
        "SYNCWS_PASSED=yes".to_owned(),
    ] {
        assert!(vars.contains(&want), "{want} missing from {vars:#?}");
    }
    let names: HashSet<&str> = vars.iter().filter_map(|v| v.split('=').next()).collect();
    for must in ["REMOTE_PORT", "SERVER_SOFTWARE", "PATH", "HTTP_HOST", "HTTP_SEC_WEBSOCKET_KEY"] {
        assert!(names.contains(must), "{must} missing from {vars:#?}");
    }
    for never in ["SYNCWS_SECRET", "HTTP_X_SNEAKY", "HTTP_PROXY", "HOME", "RUST_LOG", "CARGO"] {
        assert!(!names.contains(never), "{never} leaked: {vars:#?}");
    }
    // Nothing but these: the CGI variables websocketd sets (with
    // GATEWAY_INTERFACE and SCRIPT_NAME, which it sets too), HTTP_*, PATH
    // and what --passenv names.
    let allowed = [
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
        "GATEWAY_INTERFACE",
        "REQUEST_METHOD",
        "REQUEST_URI",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "PATH",
        "SYNCWS_PASSED",
    ];
    for name in &names {
        assert!(allowed.contains(name) || name.starts_with("HTTP_"), "{name} is not a CGI variable: {vars:#?}");
    }
    // PATH is the server's own.
    let path = std::env::var("PATH").expect("the tests run with a PATH");
    assert!(vars.contains(&format!("PATH={path}")), "PATH={path} missing from {vars:#?}");
}

#[test]
fn exit_statuses_become_close_codes() {
    let server = exec(&["--", "sh", "-c", "echo bye; exit 3"]);
    let (got, close) = session(&server.url, vec![]);
    assert_eq!(got, [text("bye")]);
    let close = close.expect("a close body");
    assert_eq!((close.status_code, close.reason.as_str()), (1011, "program exited with status 3"));

    let server = exec(&["--", "sh", "-c", "echo last words; kill -9 $$"]);
    let (got, close) = session(&server.url, vec![]);
    assert_eq!(got, [text("last words")]);
    assert_eq!(close.map(|c| (c.status_code, c.reason)), Some((1011, "program killed by signal 9".into())));

    // Reads one line, answers, exits 0: 1000 after the answer.
    let server = exec(&["--", "sh", "-c", "read l; echo \"got $l\""]);
    let (got, close) = session(&server.url, vec![text("x")]);
    assert_eq!((got, code(&close)), (vec![text("got x")], 1000));

    // stderr goes to the log, tagged with the connection.
    let server = exec(&["--", "sh", "-c", "echo oops >&2; echo out"]);
    let (got, _) = session(&server.url, vec![]);
    assert_eq!(got, [text("out")]);
    eventually("the stderr line in the log", || {
        server.log_lines().iter().any(|l| l.contains("exec #1 127.0.0.1:") && l.ends_with("stderr: oops"))
    });
}

#[test]
fn the_client_closing_closes_stdin_first() {
    // A filter sees the end of its input, prints its last words and exits
    // 0 by itself: they reach the client, then 1000.
    let server = exec(&["--", "sh", "-c", "while read l; do echo \"$l\"; done; echo stdin closed"]);
    let (got, close) = session_closing(&server.url, vec![text("a"), text("b")]);
    assert_eq!(got, [text("a"), text("b"), text("stdin closed")]);
    assert_eq!(code(&close), 1000);
    assert!(!server.log_lines().iter().any(|l| l.contains("SIGKILL")));
}

#[test]
fn a_program_that_does_not_read_stdin_gets_sigterm_to_its_group() {
    let m = marker(4);
    // It reads nothing, so the end of stdin does not end it; SIGTERM goes
    // to its group: the `sleep` dies, the shell runs its trap, whose
    // output still reaches the client, then the Close of its status.
    let script = format!("trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep {m}; done");
    let server = exec(&["--", "sh", "-c", &script]);
    let url = server.url.clone();
    let (got, close) = within("ready, close, the trap's line", move || {
        let mut ws = connect(&url).unwrap();
        assert_eq!(ws.read().unwrap(), text("ready"));
        ws.close(CloseCode::NORMAL, "").unwrap();
        read_to_close(&mut ws)
    });
    assert_eq!(got, [text("got TERM")]);
    let close = close.expect("a close body");
    assert_eq!((close.status_code, close.reason.as_str()), (1011, "program exited with status 7"));
    eventually("the sleep gone", || running(&["sleep", &m]).is_empty());
    eventually("no child of the server", || children(server.pid()).is_empty());
    // Ended by SIGTERM, well within the default grace: no SIGKILL.
    assert!(!server.log_lines().iter().any(|l| l.contains("SIGKILL")));
}

#[test]
fn a_program_that_ignores_sigterm_gets_sigkill_after_the_grace() {
    let m = marker(1);
    let script = format!("trap '' TERM; echo ready; sleep {m}; echo never");
    let server = exec(&["--kill-grace", "1s", "--", "sh", "-c", &script]);
    let url = server.url.clone();
    within("ready, then close", move || {
        let mut ws = connect(&url).unwrap();
        assert_eq!(ws.read().unwrap(), text("ready"));
        ws.close(CloseCode::NORMAL, "bye").unwrap();
        // The reply comes once the program is gone (killed: the client's
        // own code is echoed), or at the close timeout.
        let (rest, _) = read_to_close(&mut ws);
        assert!(rest.is_empty(), "{rest:?}");
    });
    eventually("the SIGKILL line", || server.log_lines().iter().any(|l| l.contains("after SIGTERM: SIGKILL")));
    eventually("the program and its sleep gone", || running(&["sleep", &m]).is_empty());
    eventually("no child of the server", || children(server.pid()).is_empty());
}

#[test]
fn a_thousand_connections_dropped_leave_no_child_and_no_orphan() {
    let m = marker(2);
    // The program leaves a `sleep` behind in its group.
    let script = format!("sleep {m} & exec cat");
    let server = exec(&["--kill-grace", "2s", "--", "sh", "-c", &script]);
    let url = server.url.clone();
    within("1,000 connections", move || {
        for batch in 0..40 {
            let mut open = Vec::new();
            for i in 0..25 {
                let mut ws = connect(&url).expect("connect");
                let hello = format!("hello {batch}.{i}");
                ws.send(text(&hello)).unwrap();
                assert_eq!(ws.read().unwrap(), text(&hello));
                open.push(ws);
            }
            for (i, mut ws) in open.into_iter().enumerate() {
                if i % 2 == 0 {
                    // Dropped without a close.
                    drop(ws);
                } else {
                    ws.close(CloseCode::NORMAL, "").unwrap();
                    let (rest, close) = read_to_close(&mut ws);
                    assert!(rest.is_empty());
                    assert_eq!(code(&close), 1000, "cat exits 0 at the end of its input");
                }
            }
        }
    });
    eventually("every program reaped", || children(server.pid()).is_empty());
    eventually("every leftover sleep ended", || running(&["sleep", &m]).is_empty());
    // Still serving.
    let (got, _) = session_closing(&server.url, vec![text("still here")]);
    assert_eq!(got, [text("still here")]);
}

#[test]
fn max_forks_answers_503_before_the_upgrade() {
    let server = exec(&["--max-forks", "2", "--", "cat"]);
    let url = server.url.clone();
    within("two programs, then 503", move || {
        let mut a = connect(&url).unwrap();
        let mut b = connect(&url).unwrap();
        for ws in [&mut a, &mut b] {
            ws.send(text("up")).unwrap();
            assert_eq!(ws.read().unwrap(), text("up"));
        }
        match connect(&url) {
            Err(Error::Handshake { status, .. }) => assert_eq!(status, 503),
            Err(other) => panic!("expected 503, got {other}"),
            Ok(_) => panic!("a third program was started"),
        }
        a.close(CloseCode::NORMAL, "").unwrap();
        read_to_close(&mut a);
        // The place comes back once the program is reaped.
        eventually("a place again", || match connect(&url) {
            Ok(mut c) => c.send(text("in")).is_ok() && c.read().ok() == Some(text("in")),
            Err(_) => false,
        });
    });
}

/// wchar (bytes written) and wchan (where it sleeps) of a process.
fn io_state(pid: i32) -> Option<(u64, String)> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let wchar = io.lines().find_map(|l| l.strip_prefix("wchar: "))?.trim().parse().ok()?;
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    Some((wchar, wchan))
}

fn vm_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

#[test]
fn a_client_that_does_not_read_stops_the_program_s_output_being_read() {
    const TOTAL: u64 = 96 << 20;
    let total = TOTAL.to_string();
    let server = exec(&["--binary", "--write-timeout", "120s", "--", "head", "-c", &total, "/dev/zero"]);
    let rss_before = vm_rss_kib(server.pid());
    let ws = within("connect", {
        let url = server.url.clone();
        move || connect(&url).unwrap()
    });
    let mut program = 0;
    eventually("the program", || {
        program = children(server.pid()).first().map_or(0, |c| c.0);
        program != 0
    });
    // The client reads nothing: the program ends up blocked writing to
    // its full pipe, having written what the buffers on the way hold.
    let mut last = (u64::MAX, 0);
    eventually("the program blocked in pipe_write", || {
        let Some((wchar, wchan)) = io_state(program) else { panic!("the program exited: its output was read") };
        let same = wchar == last.0;
        last = (wchar, if same { last.1 + 1 } else { 0 });
        std::thread::sleep(Duration::from_millis(100));
        wchan.ends_with("pipe_write") && last.1 >= 10
    });
    let written = last.0;
    eprintln!("blocked after writing {written} bytes");
    assert!(written < 32 << 20, "the program wrote {written} bytes of {TOTAL} to a client that reads nothing");
    let grown = vm_rss_kib(server.pid()).saturating_sub(rss_before);
    eprintln!("server RSS grew by {grown} KiB");
    assert!(grown < 48 << 10, "the server grew by {grown} KiB");

    // Reading again, everything arrives, then 1000.
    let (len, close) = within("the rest", move || {
        let mut ws = ws;
        let mut len = 0u64;
        loop {
            match ws.read().unwrap() {
                OwnedMessage::Binary(b) => len += b.len() as u64,
                OwnedMessage::Close(c) => return (len, c),
                other => panic!("{other:?}"),
            }
        }
    });
    assert_eq!((len, code(&close)), (TOTAL, 1000));
}

#[test]
fn a_program_that_does_not_read_slows_the_client() {
    let server = exec(&["--binary", "--write-timeout", "120s", "--", "sh", "-c", "echo ready; exec sleep 600"]);
    let url = server.url.clone();
    let (sent, err) = within("a client blocked by the program", move || {
        let mut ws = Client::builder()
            .url(&url)
            .unwrap()
            .config(config().write_timeout(Duration::from_secs(2)))
            .connect()
            .unwrap();
        assert_eq!(ws.read().unwrap(), OwnedMessage::Binary(b"ready\n".to_vec()));
        let piece = vec![b'z'; 64 << 10];
        let mut sent = 0u64;
        // At most 256 MiB: far more than any buffer on the way.
        while sent < 256 << 20 {
            if let Err(e) = ws.send(OwnedMessage::Binary(piece.clone())) {
                return (sent, e);
            }
            sent += piece.len() as u64;
        }
        panic!("256 MiB went to a program that reads nothing");
    });
    eprintln!("the client was blocked after sending {sent} bytes: {err}");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(sent < 32 << 20, "{sent} bytes were taken from the client");
}

#[test]
fn a_signal_to_the_server_ends_every_program() {
    let m = marker(3);
    let script = format!("trap '' TERM; echo ready; sleep {m}");
    let mut server = exec(&["--kill-grace", "1s", "--", "sh", "-c", &script]);
    let clients: Vec<Client> = (0..3)
        .map(|_| {
            let url = server.url.clone();
            within("a program", move || {
                let mut ws = connect(&url).unwrap();
                assert_eq!(ws.read().unwrap(), text("ready"));
                ws
            })
        })
        .collect();
    eventually("three sleeps", || running(&["sleep", &m]).len() == 3);
    let pid = server.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let code = within("the server's exit", move || server.child.wait().unwrap().code());
    assert_eq!(code, Some(0));
    // Every program, SIGTERM ignored, was killed before the server exited.
    assert!(running(&["sleep", &m]).is_empty(), "programs outlived the server");
    drop(clients);
}

/// `syncws exec unix:PATH` serves a Unix socket, whose peer has no
/// address: `REMOTE_ADDR` and `REMOTE_PORT` are empty (even one passed on
/// with --passenv), `SERVER_NAME` comes from `Host` (`localhost`, what a
/// `ws+unix://` client sends) and `SERVER_PORT` is empty. `--metrics`
/// answers on the socket with the socket server's own counts; SIGTERM
/// removes the socket file.
#[test]
fn exec_on_a_unix_socket_gives_an_empty_remote_addr() {
    let dir = temp_dir("unix");
    let sock = dir.join("exec.sock");
    let listen = format!("unix:{}", sock.display());
    let script =
        r#"echo "addr=[$REMOTE_ADDR] port=[$REMOTE_PORT] name=$SERVER_NAME sport=[$SERVER_PORT] info=$PATH_INFO""#;
    let args = ["exec", &listen, "--metrics", "--passenv", "REMOTE_ADDR", "--", "sh", "-c", script];
    let mut server = start(&args, &[("REMOTE_ADDR", "10.9.9.9")]);
    assert_eq!(server.url, format!("ws+unix://{}:/", sock.display()));

    let (got, close) = session(&format!("ws+unix://{}:/some/path", sock.display()), vec![]);
    assert_eq!(got, [text("addr=[] port=[] name=localhost sport=[] info=/some/path")]);
    assert_eq!(code(&close), 1000);

    let path = sock.clone();
    let answer = within("GET /metrics over the socket", move || {
        let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    });
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.lines().any(|l| l == "syncws_websockets_opened_total 1"), "{answer}");
    assert!(answer.lines().any(|l| l == "syncws_connections_open 1"), "{answer}");

    let pid = server.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = within("the server's exit", move || server.child.wait().unwrap().code());
    assert_eq!(exit, Some(0));
    assert!(!sock.exists(), "the socket file outlived the server");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dir_routes_to_executables_inside_it_only() {
    let root = temp_dir("dir");
    let scripts = root.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    write_script(&scripts.join("hello"), "#!/bin/sh\necho \"hello $SCRIPT_NAME $PATH_INFO $QUERY_STRING\"\n");
    std::fs::write(scripts.join("notes.txt"), "not executable\n").unwrap();
    write_script(&scripts.join(".hidden"), "#!/bin/sh\necho hidden\n");
    write_script(&root.join("outside"), "#!/bin/sh\necho outside\n");
    std::os::unix::fs::symlink(root.join("outside"), scripts.join("link-out")).unwrap();
    std::os::unix::fs::symlink(scripts.join("hello"), scripts.join("link-in")).unwrap();

    let server = exec(&["--dir", scripts.to_str().unwrap()]);
    let (got, close) = session(&format!("{}/hello/a/b?q=1", server.url), vec![]);
    assert_eq!((got, code(&close)), (vec![text("hello /hello /a/b q=1")], 1000));
    let (got, _) = session(&format!("{}/link-in", server.url), vec![]);
    assert_eq!(got, [text("hello /link-in  ")]);

    let upgrade = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let hp = server.host_port();
    for (path, want) in [
        ("/../outside", [403, 404]),
        ("/%2e%2e/outside", [403, 404]),
        ("/..%2foutside", [403, 404]),
        ("/%2E%2E%2Foutside", [403, 404]),
        ("//outside", [404, 404]),
        ("/link-out", [403, 403]),
        ("/notes.txt", [404, 404]),
        ("/.hidden", [404, 404]),
        ("/nope", [404, 404]),
        ("/", [404, 404]),
    ] {
        let answer = http(&hp, &upgrade(path));
        assert!(want.contains(&status(&answer)), "{path}: {answer}");
        assert!(!answer.contains("outside"), "{path}: {answer}");
    }
    assert!(children(server.pid()).is_empty());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn static_files_on_the_same_port_and_never_outside_the_folder() {
    let root = temp_dir("static");
    let site = root.join("site");
    std::fs::create_dir_all(site.join("sub")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(site.join("app.js"), "console.log(1)").unwrap();
    // Shadowed by --metrics where both are given (the order test below).
    std::fs::write(site.join("metrics"), "a static file named metrics").unwrap();
    std::fs::write(site.join("sub/index.html"), "sub home").unwrap();
    std::fs::write(site.join(".env"), "SECRET=1").unwrap();
    std::fs::write(root.join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(root.join("secret.txt"), site.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&root, site.join("up")).unwrap();

    let server = exec(&["--static", site.to_str().unwrap(), "--", "cat"]);
    let hp = server.host_port();
    let home = get(&hp, "/");
    assert_eq!(status(&home), 200, "{home}");
    assert!(home.contains("text/html") && home.ends_with("<h1>home</h1>"), "{home}");
    let js = get(&hp, "/app.js?v=2");
    assert!(status(&js) == 200 && js.contains("Content-Type: text/javascript"), "{js}");
    let head = http(&hp, &format!("HEAD /app.js HTTP/1.1\r\nHost: {hp}\r\nConnection: close\r\n\r\n"));
    assert!(head.contains("Content-Length: 14") && head.ends_with("\r\n\r\n"), "{head}");
    assert_eq!(status(&get(&hp, "/sub/")), 200);
    let redirect = get(&hp, "/sub");
    assert!(status(&redirect) == 301 && redirect.contains("Location: /sub/"), "{redirect}");
    assert_eq!(status(&get(&hp, "/missing.css")), 404);
    let post = http(&hp, &format!("POST / HTTP/1.1\r\nHost: {hp}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
    assert_eq!(status(&post), 405, "{post}");

    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/sub/../../secret.txt",
        "/..%2fsecret.txt",
        "/link.txt",
        "/up/secret.txt",
        "/.env",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/x%00.html",
        "http://evil/etc/passwd",
    ] {
        let answer = get(&hp, path);
        assert!([403, 404].contains(&status(&answer)), "{path}: {answer}");
        assert!(!answer.contains("top secret") && !answer.contains("root:"), "{path}: {answer}");
    }

    // The WebSocket still works on any path of the same port.
    let (got, _) = session_closing(&format!("{}/any/path", server.url), vec![text("ws")]);
    assert_eq!(got, [text("ws")]);

    // Every server takes --static: echo here.
    let echo = start(&["echo", "127.0.0.1:0", "--static", site.to_str().unwrap()], &[]);
    let home = get(&echo.host_port(), "/");
    assert!(status(&home) == 200 && home.ends_with("<h1>home</h1>"), "{home}");
    assert_eq!(status(&get(&echo.host_port(), "/../secret.txt")), 403);

    // The order: /metrics, then the tool's own page, then the files.
    let chat = start(&["chat", "127.0.0.1:0", "--metrics", "--static", site.to_str().unwrap()], &[]);
    let hp = chat.url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let page = get(&hp, "/");
    assert!(status(&page) == 200 && page.contains("new WebSocket("), "{page}");
    let metrics = get(&hp, "/metrics");
    assert!(status(&metrics) == 200 && metrics.contains("syncws_connections_open"), "{metrics}");
    assert!(!metrics.contains("a static file named metrics"), "{metrics}");
    let js = get(&hp, "/app.js");
    assert!(status(&js) == 200 && js.ends_with("console.log(1)"), "{js}");
    assert_eq!(status(&get(&hp, "/missing")), 404);
    assert_eq!(status(&get(&hp, "/../secret.txt")), 403);

    // And the other servers: pubsub (its topic list at `/`, the files
    // after it), bridge ws2tcp and proxy (their targets need not be up to
    // serve files).
    let site = site.to_str().unwrap();
    let dead = dead_addr().to_string();
    let upstream = format!("ws://{dead}");
    for args in [
        vec!["pubsub", "127.0.0.1:0", "--static", site],
        vec!["bridge", "ws2tcp", "--listen", "127.0.0.1:0", "--to", &dead, "--static", site],
        vec!["proxy", "--listen", "127.0.0.1:0", "-u", &upstream, "--static", site],
    ] {
        let server = start(&args, &[]);
        let hp = server.host_port();
        let js = get(&hp, "/app.js");
        assert!(status(&js) == 200 && js.ends_with("console.log(1)"), "{args:?}: {js}");
        assert_eq!(status(&get(&hp, "/missing.css")), 404, "{args:?}");
        let answer = get(&hp, "/%2e%2e/secret.txt");
        assert!(status(&answer) == 403 && !answer.contains("top secret"), "{args:?}: {answer}");
    }
    let _ = std::fs::remove_dir_all(&root);
}
