//! Real proxies for the tests, from Debian's packages: tinyproxy (HTTP
//! `CONNECT`) and microsocks (SOCKS5), each started on a free loopback
//! port and killed by its PID when dropped. `.ci/run` installs both; a
//! test that needs one fails, never skips, when it is missing.
//!
//! Shared by the library's tests and the cli's (`#[path]`), so there is
//! one copy.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::ports::{free_port, listening};

/// How long a proxy may take to start; reached only when broken.
const START: Duration = Duration::from_secs(20);

/// A proxy process; killed (by its PID) when dropped.
pub struct ProxyProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its temporary directory (tinyproxy's config), removed when dropped.
    dir: Option<PathBuf>,
}

impl ProxyProcess {
    /// `scheme://[user:pass@]addr`.
    pub fn url(&self, scheme: &str, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, pass)) => format!("{scheme}://{user}:{pass}@{}", self.addr),
            None => format!("{scheme}://{}", self.addr),
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn spawn(command: &mut Command, name: &str) -> Child {
    match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{name} is not installed; the proxy tests need it: apt-get install tinyproxy microsocks \
             (.ci/run installs them)"
        ),
        Err(e) => panic!("cannot start {name}: {e}"),
    }
}

/// tinyproxy on 127.0.0.1, allowing `CONNECT` to `connect_ports` only
/// (Debian's default would allow 443 and 563), with Basic credentials if
/// given. Ready when it logs that it accepts connections.
pub fn tinyproxy(credentials: Option<(&str, &str)>, connect_ports: &[u16]) -> ProxyProcess {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "syncws-tinyproxy-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut last_output = String::new();
    for _attempt in 0..3 {
        let port = free_port();
        let mut conf =
            format!("Port {port}\nListen 127.0.0.1\nTimeout 60\nLogLevel Info\nMaxClients 64\nAllow 127.0.0.1\n");
        for p in connect_ports {
            conf.push_str(&format!("ConnectPort {p}\n"));
        }
        if let Some((user, pass)) = credentials {
            conf.push_str(&format!("BasicAuth {user} {pass}\n"));
        }
        let path = dir.join("tinyproxy.conf");
        std::fs::write(&path, conf).expect("write tinyproxy.conf");
        let mut child = spawn(
            Command::new("tinyproxy").arg("-d").arg("-c").arg(&path).stdout(Stdio::piped()).stderr(Stdio::piped()),
            "tinyproxy",
        );
        // Its log goes to stdout (no LogFile): read until it accepts, then
        // keep draining it so that it never blocks on a full pipe.
        let (tx, rx) = crossbeam_channel::unbounded();
        let stdout = child.stdout.take().expect("stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
        let until = Instant::now() + START;
        let mut output = String::new();
        let ready = loop {
            match rx.recv_deadline(until) {
                Ok(line) => {
                    output.push_str(&line);
                    output.push('\n');
                    if line.contains("Accepting connections") {
                        break true;
                    }
                }
                Err(_) => break false,
            }
        };
        if ready {
            return ProxyProcess { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), dir: Some(dir) };
        }
        // Most likely the port was taken meanwhile: try another.
        let _ = child.kill();
        let _ = child.wait();
        last_output = output;
    }
    panic!("tinyproxy did not start:\n{last_output}");
}

/// microsocks on 127.0.0.1, with a user and password if given. It logs
/// nothing when ready, so readiness is a connection it accepts.
pub fn microsocks(credentials: Option<(&str, &str)>) -> ProxyProcess {
    for _attempt in 0..3 {
        let port = free_port();
        let mut command = Command::new("microsocks");
        command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((user, pass)) = credentials {
            command.args(["-u", user, "-P", pass]);
        }
        let mut child = spawn(command.stdout(Stdio::null()).stderr(Stdio::null()), "microsocks");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let until = Instant::now() + START;
        loop {
            // Listening, and not someone else on that port: a microsocks
            // that lost the port to another process has exited.
            let listens = listening(addr);
            let exited = child.try_wait().ok().flatten().is_some();
            if listens && !exited {
                return ProxyProcess { child, addr, dir: None };
            }
            if exited || Instant::now() > until {
                break;
            }
            // A process gives no readiness signal to wait on: poll.
            thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("microsocks did not start");
}
