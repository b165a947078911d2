//! A real browser: headless Chromium (Debian's `chromium`), driven by
//! playwright-core from `tests/browser/run.mjs`, against `syncws chat`
//! (rooms, and the close code a page sees when the server stops) and
//! `examples/http_and_ws` (its page's WebSocket round trip).
//!
//! Needs `node`, `/usr/bin/chromium` (or `SYNCWS_CHROMIUM`) and
//! `tests/browser/node_modules`: `.ci/run` installs them. Without them the
//! tests fail, never skip. `SYNCWS_SCREENSHOT=docs/chat.png` (relative to
//! the repository) also saves the chat's picture the README shows.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};

const BIN: &str = env!("CARGO_BIN_EXE_syncws");

/// Bound for a browser step: starting Chromium on a slow, busy machine
/// takes a while. Reached only when something is broken.
const BROWSER_WAIT: Duration = Duration::from_secs(180);

const INSTALL: &str = "run .ci/run's step \"chromium and playwright-core for the browser tests\" \
                       (apt-get install -y chromium; npm ci --prefix tests/browser)";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned()
}

/// Fails (never skips) when the browser or its driver is missing.
fn preflight() {
    let chromium = std::env::var("SYNCWS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "{chromium} not found: {INSTALL}");
    let driver = repo().join("tests/browser/node_modules/playwright-core");
    assert!(driver.exists(), "{} not found: {INSTALL}", driver.display());
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node not found: install Node.js (20 or later), then {INSTALL}");
}

/// A child process, killed (by its PID) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// The exit code, waiting at most [`BROWSER_WAIT`].
    fn exit_code(&mut self, what: &str) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(start.elapsed() < BROWSER_WAIT, "{what} did not exit");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `program ARGS` with stdout piped; its stdout lines arrive on the
/// receiver (which disconnects at EOF).
fn spawn_lines(program: &Path, args: &[&str], dir: &Path) -> (Proc, Receiver<String>) {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let (tx, rx) = unbounded();
    let out = BufReader::new(child.stdout.take().unwrap());
    thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

/// The next line on `rx`, or a panic naming `what`.
fn next_line(rx: &Receiver<String>, what: &str) -> String {
    match rx.recv_timeout(BROWSER_WAIT) {
        Ok(line) => line,
        Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the program ended first (see its stderr above)"),
    }
}

/// `node tests/browser/run.mjs ARGS`.
fn run_browser(args: &[&str]) -> (Proc, Receiver<String>) {
    let mut all = vec!["tests/browser/run.mjs"];
    all.extend_from_slice(args);
    spawn_lines(Path::new("node"), &all, &repo())
}

#[test]
fn chat_in_chromium_rooms_and_the_close_code() {
    support::init_log();
    preflight();
    let (mut server, lines) = spawn_lines(Path::new(BIN), &["chat", "127.0.0.1:0"], &repo());
    let first = next_line(&lines, "the chat's address line");
    let url = first.strip_prefix("chat on ").unwrap_or_else(|| panic!("unexpected first line {first:?}")).to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let shot = std::env::var("SYNCWS_SCREENSHOT").ok();
    let mut args = vec!["chat", url.as_str()];
    args.extend(shot.as_deref());
    let (mut browser, out) = run_browser(&args);
    // Two pages in alpha saw each other's lines, the beta page neither.
    assert_eq!(next_line(&out, "the pages' messages"), "ready");

    // A graceful stop, as on SIGTERM: every page is told 1001 (Going Away).
    let pid = server.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("run kill").success());
    assert_eq!(next_line(&out, "the close codes the pages showed"), "closed 1001 1001 1001");
    assert_eq!(browser.exit_code("the browser script"), Some(0));
    assert_eq!(server.exit_code("syncws chat"), Some(0), "syncws chat exits cleanly after SIGTERM");
}

/// `examples/http_and_ws`, built by a nested cargo into this build's
/// target directory (a no-op when it is fresh).
fn http_and_ws_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    // target/<profile>/deps/browser-HASH
    let profile = exe.ancestors().nth(2).expect("the profile directory").to_owned();
    let target = profile.parent().expect("the target directory");
    let mut cargo = Command::new(env!("CARGO"));
    // Without the variables cargo set for this test (CARGO_PKG_*, ...),
    // which would make the build's fingerprints differ from a plain
    // `cargo build`'s and rebuild the library each time.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests =
            ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_", "CARGO_TARGET_TMPDIR"];
        if set_for_tests.iter().any(|p| name.starts_with(p)) || name == "OUT_DIR" {
            cargo.env_remove(&*name);
        }
    }
    cargo.current_dir(repo()).args(["build", "-p", "syncws", "--example", "http_and_ws", "--target-dir"]).arg(target);
    if profile.file_name().is_some_and(|p| p == "release") {
        cargo.arg("--release");
    }
    let status = support::within("cargo build --example http_and_ws", move || cargo.status());
    assert!(status.expect("run cargo").success(), "cargo build --example http_and_ws failed");
    profile.join("examples").join(format!("http_and_ws{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn example_http_and_ws_in_chromium() {
    support::init_log();
    preflight();
    let bin = http_and_ws_binary();
    let (_server, lines) = spawn_lines(&bin, &["127.0.0.1:0"], &repo());
    let first = next_line(&lines, "the example's address line");
    let url = first.strip_prefix("open ").unwrap_or_else(|| panic!("unexpected first line {first:?}")).to_owned();
    let (mut browser, out) = run_browser(&["echo", &url]);
    let echoed = next_line(&out, "the page's round trip");
    assert_eq!(echoed, r#"echoed ["open","> round trip through syncws","< round trip through syncws"]"#);
    assert_eq!(browser.exit_code("the browser script"), Some(0));
}
