//! Real servers for the cluster tests, from Debian's packages:
//! `redis-server` and nginx (`nginx-light`), each started on a free
//! loopback port with its files in a temporary directory, and ended by its
//! PID when dropped. `.ci/run` installs both; a test that needs one fails,
//! never skips, when it is missing.
//!
//! Shared by the library's tests and the cli's (`#[path]`), so there is
//! one copy.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::ports::{free_port, listening};

/// How long a server may take to start; reached only when broken.
const START: Duration = Duration::from_secs(30);

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "syncws-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn spawn(command: &mut Command, name: &str, package: &str) -> Child {
    match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{name} is not installed; the cluster tests need it: apt-get install {package} (.ci/run does)")
        }
        Err(e) => panic!("cannot start {name}: {e}"),
    }
}

/// Sends `signal` to the process `pid`.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a PID this test started and still owns (not yet
    // reaped), and a valid signal number.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}

/// Polls `done` every 20 ms until it holds or `within` has passed; true if
/// it held.
pub fn poll(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` on 127.0.0.1, without persistence; killed (SIGKILL,
/// by its PID) when dropped. It can be killed and started again on the
/// same port.
pub struct Redis {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> Redis {
        let dir = temp_dir("redis");
        let mut last = String::new();
        for _attempt in 0..3 {
            let mut r = Redis { child: None, port: free_port(), dir: dir.clone() };
            match r.try_start() {
                Ok(()) => return r,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// A Redis that is not running yet, on a port free now: [`up`](Self::up)
    /// starts it.
    pub fn reserved() -> Redis {
        Redis { child: None, port: free_port(), dir: temp_dir("redis") }
    }

    /// Starts it (again) on its port and waits until it answers PING.
    pub fn up(&mut self) {
        let mut last = String::new();
        for _attempt in 0..5 {
            match self.try_start() {
                Ok(()) => return,
                // The old process's socket may linger a moment.
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("redis-server did not start again on {}: {last}", self.port);
    }

    fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let log = self.dir.join(format!("redis-{}.log", self.port));
        let mut child = spawn(
            Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--logfile"])
                .arg(&log)
                .current_dir(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "redis-server",
            "redis-server",
        );
        let until = Instant::now() + START;
        while Instant::now() < until {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            if self.command(&["PING"]).is_ok_and(|r| r == "PONG") {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("no answer to PING".into())
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its PID while it runs.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One command over a fresh connection (RESP written and read here,
    /// no client library), with a 5 s deadline; the reply as text
    /// (integers as digits, arrays joined by spaces).
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], self.port)), Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        read_reply(&mut BufReader::new(s))
    }

    /// The subscriber count of `channel` (PUBSUB NUMSUB).
    pub fn numsub(&self, channel: &str) -> usize {
        let reply = self.command(&["PUBSUB", "NUMSUB", channel]).unwrap_or_default();
        reply.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end();
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty reply"))?;
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Err(std::io::Error::other(rest.to_owned())),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad(line))?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0; len as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(len as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad(line))?;
            let items: std::io::Result<Vec<String>> = (0..n.max(0)).map(|_| read_reply(r)).collect();
            Ok(items?.join(" "))
        }
        _ => Err(bad(line)),
    }
}

/// `deploy/nginx.conf`, the one the README walks through, listening on
/// `port` in front of `upstreams` instead of its own ports.
pub fn nginx_conf(port: u16, upstreams: &[SocketAddr]) -> String {
    // The manifest directory is the library's or the cli's.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = [dir.join("deploy/nginx.conf"), dir.join("../deploy/nginx.conf")]
        .into_iter()
        .find(|p| p.exists())
        .expect("deploy/nginx.conf");
    let conf = std::fs::read_to_string(path).expect("read deploy/nginx.conf");
    let mut out = String::new();
    let mut servers_done = false;
    for line in conf.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("listen 127.0.0.1:18080;") {
            out.push_str(&format!("        listen 127.0.0.1:{port};\n"));
        } else if let Some(rest) = trimmed.strip_prefix("server 127.0.0.1:1900") {
            // The first upstream line stands for all; its options kept.
            if !servers_done {
                let options = rest.split_once(' ').map_or(";", |(_, o)| o);
                for a in upstreams {
                    out.push_str(&format!("        server {a} {options}\n"));
                }
                servers_done = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(servers_done && out.contains(&format!(":{port};")), "deploy/nginx.conf changed shape");
    out
}

/// nginx with the deploy/ config ([`nginx_conf`]: least_conn, Upgrade and
/// Connection, a long read timeout) on a free loopback port, its pid file,
/// logs and temporary files in a directory of its own; killed by its PID
/// when dropped.
pub struct Nginx {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    /// Starts it and waits until its port accepts connections.
    pub fn start(upstreams: &[SocketAddr]) -> Nginx {
        let dir = temp_dir("nginx");
        std::fs::create_dir_all(dir.join("tmp")).expect("nginx tmp dir");
        let mut last = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let conf = nginx_conf(port, upstreams);
            let path = dir.join("nginx.conf");
            std::fs::write(&path, conf).expect("write nginx.conf");
            let mut child = spawn(
                Command::new("nginx")
                    .arg("-p")
                    .arg(&dir)
                    .arg("-c")
                    .arg(&path)
                    .args(["-e", "error.log", "-g", "daemon off;"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
                "nginx",
                "nginx-light",
            );
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let until = Instant::now() + START;
            let ready = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if listening(addr) {
                    break true;
                }
                if Instant::now() >= until {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if ready {
                return Nginx { child, addr, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        }
        panic!("nginx did not start:\n{last}");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The master's PID: SIGKILL to it leaves its worker, which exits
        // once it finds its parent gone; SIGQUIT-free shutdown is
        // SIGTERM (fast), then the wait.
        signal(self.child.id(), libc::SIGTERM);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
