//! `syncws exec`: a program per WebSocket connection, like websocketd.
//!
//! For each connection the server starts the program (no shell in
//! between) with the CGI environment of the upgrade request ([`cgi`]).
//! Each Text message goes to its stdin followed by a newline; each line it
//! prints on stdout comes back as a Text message (Binary if the line is
//! not UTF-8; in pieces of `max_message_size` if longer). With `binary`,
//! raw bytes go both ways: messages to stdin as they are, stdout back in
//! Binary messages of up to 64 KiB. stderr goes to the log, one line at a
//! time, tagged with the connection.
//!
//! # Life cycle
//!
//! - The client closes (or the connection fails, or the server stops):
//!   stdin is closed; SIGTERM goes to the program's process group unless
//!   it exits within 1 s; SIGKILL after `kill_grace` (default 5 s).
//!   The client's Close is answered once the program's output has ended
//!   (within `close_timeout`), so what it printed in the meantime, such as
//!   its answer to the last message, still reaches the client.
//! - The program exits: after its last output, the connection closes with
//!   1000 for status 0, 1011 (with the status in the reason) for another
//!   status or a signal. What it left running in its group gets SIGTERM,
//!   then SIGKILL after the grace.
//! - Every program is reaped by a thread that waits for it: no zombie.
//!   Each runs in a process group of its own and is signalled as a group:
//!   nothing it started survives it (short of leaving the group on
//!   purpose). A server that stops on SIGINT or SIGTERM ends its
//!   programs before it exits ([`Exec::shutdown`]).
//!
//! # Costs and limits
//!
//! Each connection costs a socket, three pipes (six descriptors, three in
//! the server), a process, and four threads beside the connection's (the
//! feeder, pump, stderr and waiter threads; small stacks), five while the
//! client reads more slowly than the program prints (the connection's
//! writer thread). Hence
//! `max_forks`, 1,000 by default: past it, upgrade requests get 503
//! before anything is started, where the library's own connection cap
//! (16,384) would let a burst of clients fork the machine to its knees.
//!
//! Backpressure is end to end: a client that does not read fills the
//! connection's outbound queue (`queue_max_bytes`, 1 MiB by default
//! here), then the pipe, and the program blocks writing; a program that does not read its stdin holds
//! the connection's thread, which stops reading the client. A side that
//! accepts nothing for `write_timeout` ends the connection.
//!
//! # Routing
//!
//! With a single command, every path runs it (`PATH_INFO` is the whole
//! path). With `dir`, `/NAME/more` runs the executable `DIR/NAME` (after
//! resolving links, it must still lie under `DIR`; names starting with a
//! dot are refused) with `SCRIPT_NAME=/NAME` and `PATH_INFO=/more`;
//! anything else gets 404.

pub mod cgi;
pub mod forks;
pub mod process;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use syncws::rustls::ServerConfig;
use syncws::{
    CloseData, Config, Error, Listener, OwnedMessage, QueuePolicy, Request, Response, Result, Running, Server,
    UnixRunning, WsHandshake, WsOption, WsTrait,
};

use crate::common::{HttpFlags, Routes};
use crate::static_files::percent_decode;
use forks::{Fork, Forks};
use process::{Job, Spec};

/// Default `--max-forks`.
pub const DEFAULT_MAX_FORKS: usize = 1000;
/// Default `--kill-grace`: between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// What runs for each connection.
#[derive(Debug, Clone)]
pub enum Program {
    /// One command and its arguments, for every path.
    Command {
        /// The executable: a path, or a name looked up in `PATH`.
        program: OsString,
        /// Its arguments.
        args: Vec<OsString>,
    },
    /// `/NAME` runs the executable `DIR/NAME`.
    Dir(PathBuf),
}

/// Options of `syncws exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Where clients connect: `HOST:PORT`, or `unix:PATH` for a Unix
    /// socket, created at `PATH` (which must not exist) and removed by
    /// [`Exec::shutdown`]. Over a Unix socket the peer has no address: the
    /// programs get `REMOTE_ADDR` and `REMOTE_PORT` empty (and
    /// `SERVER_PORT` too), per-IP caps do not apply, and TLS is not
    /// offered (the socket file's permissions say who may connect).
    pub listen: String,
    /// What runs.
    pub program: Program,
    /// Raw bytes both ways instead of lines.
    pub binary: bool,
    /// Variables of the server's environment the programs also get.
    pub passenv: Vec<String>,
    /// Most programs running at once; more connections get 503.
    pub max_forks: usize,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Plain HTTP on the same port (`--metrics`, `--static`).
    pub http: HttpFlags,
    /// Serve over TLS (wss://) with this configuration; `None`: plain ws://.
    pub tls: Option<Arc<ServerConfig>>,
    /// Limits and timeouts ([`default_config`] for the exec defaults).
    /// Its `queue_policy` is replaced: the output of a program waits for
    /// room in the queue up to `write_timeout`.
    pub config: Config,
}

/// The library's defaults, with a smaller outbound queue per connection
/// (1 MiB instead of 16): what a program printed and its client did not
/// read yet, held in the server; past it, the program waits.
pub fn default_config() -> Config {
    Config::default().queue_max_bytes(1 << 20)
}

impl ExecOptions {
    /// Options with the defaults.
    pub fn new(listen: &str, program: Program) -> Self {
        ExecOptions {
            listen: listen.to_owned(),
            program,
            binary: false,
            passenv: Vec::new(),
            max_forks: DEFAULT_MAX_FORKS,
            kill_grace: DEFAULT_KILL_GRACE,
            http: HttpFlags::default(),
            tls: None,
            config: default_config(),
        }
    }
}

/// A running `syncws exec`.
#[derive(Debug)]
pub struct Exec {
    served: Served,
    forks: Arc<Forks>,
    grace: Duration,
}

/// The server under a `syncws exec`: a TCP listener, or a Unix socket.
#[derive(Debug)]
enum Served {
    Tcp(Running),
    Unix { running: UnixRunning, path: PathBuf },
}

impl Exec {
    /// The TCP address it listens on; `None` on a Unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.served {
            Served::Tcp(running) => Some(running.local_addr()),
            Served::Unix { .. } => None,
        }
    }

    /// The Unix socket it listens on, if it does.
    pub fn unix_socket(&self) -> Option<&Path> {
        match &self.served {
            Served::Tcp(_) => None,
            Served::Unix { path, .. } => Some(path),
        }
    }

    /// Programs running now.
    pub fn programs(&self) -> usize {
        self.forks.live()
    }

    /// Stops accepting, closes every connection with 1001, which ends its
    /// program (stdin closed, SIGTERM, SIGKILL after the grace), and waits
    /// until every program and its group are gone.
    pub fn shutdown(self) {
        match self.served {
            Served::Tcp(running) => running.shutdown(),
            Served::Unix { running, path } => {
                running.shutdown();
                if let Err(e) = std::fs::remove_file(&path) {
                    log::warn!("exec: removing the socket {}: {e}", path.display());
                }
            }
        }
        let bound = process::STDIN_GRACE + self.grace + Duration::from_secs(2);
        if !self.forks.wait_idle(bound) {
            self.forks.kill_all();
            if !self.forks.wait_idle(Duration::from_secs(5)) {
                log::warn!("exec: {} programs still not reaped at exit", self.forks.live());
            }
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
struct Shared {
    opts: ExecOptions,
    /// The program of a single command, resolved at start.
    command: Option<(PathBuf, Vec<OsString>)>,
    /// `--dir`, links resolved.
    root: Option<PathBuf>,
    forks: Arc<Forks>,
    /// The TCP address served; `None` on a Unix socket.
    local: Option<SocketAddr>,
    passed: Vec<(String, OsString)>,
    path: Option<OsString>,
    next_id: AtomicU64,
}

/// Starts `syncws exec` on a thread of its own.
pub fn exec(opts: ExecOptions) -> Result<Exec> {
    if opts.max_forks == 0 {
        return Err(Error::Config("max_forks must be above 0".into()));
    }
    let path = std::env::var_os("PATH");
    let (command, root) = match &opts.program {
        Program::Command { program, args } => {
            let found = find_program(program, path.as_deref().unwrap_or(cgi::DEFAULT_PATH.as_ref()))
                .ok_or_else(|| Error::Config(format!("{}: no such executable", program.to_string_lossy())))?;
            (Some((found, args.clone())), None)
        }
        Program::Dir(dir) => {
            let root = dir.canonicalize().map_err(|e| Error::Config(format!("--dir {}: {e}", dir.display())))?;
            if !root.is_dir() {
                return Err(Error::Config(format!("--dir {}: not a folder", dir.display())));
            }
            (None, Some(root))
        }
    };
    let passed = opts.passenv.iter().filter_map(|name| std::env::var_os(name).map(|v| (name.clone(), v))).collect();
    let config = opts.config.clone().queue_policy(QueuePolicy::Block(opts.config.write_timeout));
    let routes = Routes::new(&opts.http)?;
    let bound = match opts.listen.strip_prefix("unix:") {
        Some(path) => {
            if opts.tls.is_some() {
                return Err(Error::Config("unix:PATH is served without TLS: drop the --tls flags".into()));
            }
            let path = PathBuf::from(path);
            let listener = UnixListener::bind(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("unix:{}: {e}", path.display())))?;
            log::info!("exec on ws+unix://{}: {:?}", path.display(), opts.program);
            Bound::Unix(listener, path)
        }
        None => {
            let mut listener = Listener::bind_with_config(opts.listen.as_str(), config.clone())?;
            if let Some(tls) = &opts.tls {
                listener = listener.tls(Arc::clone(tls));
            }
            let scheme = if opts.tls.is_some() { "wss" } else { "ws" };
            log::info!("exec on {scheme}://{}: {:?}", listener.local_addr(), opts.program);
            Bound::Tcp(listener)
        }
    };
    let local = match &bound {
        Bound::Tcp(listener) => Some(listener.local_addr()),
        Bound::Unix(..) => None,
    };
    let forks = Forks::new(opts.max_forks);
    let grace = opts.kill_grace;
    let shared = Arc::new(Shared {
        opts,
        command,
        root,
        forks: Arc::clone(&forks),
        local,
        passed,
        path,
        next_id: AtomicU64::new(0),
    });
    let setup = move |server: &mut Server| {
        routes.install(server);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let peer = server.peer_addr();
        let tag = match peer {
            Some(p) => format!("exec #{id} {p}"),
            None => format!("exec #{id}"),
        };
        server.set_callback_ws(Box::new(Conn { shared: Arc::clone(&shared), peer, tag, job: None }));
    };
    let served = match bound {
        Bound::Tcp(listener) => Served::Tcp(listener.spawn(setup)?),
        Bound::Unix(listener, path) => match syncws::serve_unix(listener, config, setup) {
            Ok(running) => Served::Unix { running, path },
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        },
    };
    Ok(Exec { served, forks, grace })
}

/// The socket `syncws exec` was bound to, before it serves.
enum Bound {
    Tcp(Listener),
    Unix(UnixListener, PathBuf),
}

/// `name` as an executable: itself if it has a `/`, else the first match in
/// `path`.
fn find_program(name: &std::ffi::OsStr, path: &std::ffi::OsStr) -> Option<PathBuf> {
    let is_exec = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if name.as_bytes().contains(&b'/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    std::env::split_paths(path).map(|dir| dir.join(name)).find(|p| is_exec(p))
}

/// One connection and its program.
struct Conn {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    tag: String,
    job: Option<Job>,
}

/// The program chosen for a request.
struct Target {
    program: PathBuf,
    args: Vec<OsString>,
    script_name: String,
    path_info: String,
}

impl Conn {
    /// The program for `req`, or the refusal to answer.
    fn target(&self, req: &Request) -> std::result::Result<Target, Response> {
        let path = req.path.split('?').next().unwrap_or("");
        let decode = |s: &str| match percent_decode(s) {
            Some(b) if !b.contains(&0) => Ok(b),
            _ => Err(Response::text(400, "malformed path\n")),
        };
        if let Some((program, args)) = &self.shared.command {
            let info = String::from_utf8_lossy(&decode(path)?).into_owned();
            return Ok(Target {
                program: program.clone(),
                args: args.clone(),
                script_name: String::new(),
                path_info: info,
            });
        }
        let Some(root) = &self.shared.root else { return Err(Response::text(500, "nothing to run\n")) };
        let not_found = || Response::text(404, "no such program\n");
        let rest = path.strip_prefix('/').ok_or_else(not_found)?;
        let (name, info) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let name = decode(name)?;
        if name.is_empty() || name.starts_with(b".") || name.contains(&b'/') {
            return Err(not_found());
        }
        let candidate = root.join(std::ffi::OsStr::from_bytes(&name));
        let Ok(real) = candidate.canonicalize() else { return Err(not_found()) };
        if !real.starts_with(root) {
            log::warn!("{}: {} leads out of --dir: refused", self.tag, candidate.display());
            return Err(Response::text(403, "forbidden\n"));
        }
        let executable = real.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !executable {
            return Err(not_found());
        }
        let info = String::from_utf8_lossy(&decode(info)?).into_owned();
        let script_name = format!("/{}", String::from_utf8_lossy(&name));
        Ok(Target { program: real, args: Vec::new(), script_name, path_info: info })
    }

    /// Starts the program for `req`.
    fn start(&mut self, req: &Request, target: Target, fork: Fork) -> std::io::Result<()> {
        let env = cgi::environment(&cgi::CgiInput {
            request: req,
            peer: self.peer,
            local: self.shared.local,
            script_name: &target.script_name,
            path_info: &target.path_info,
            passed: &self.shared.passed,
            path: self.shared.path.clone(),
        });
        let spec = Spec {
            program: target.program,
            args: target.args,
            env,
            binary: self.shared.opts.binary,
            max_message: self.shared.opts.config.max_message_size,
            grace: self.shared.opts.kill_grace,
            tag: self.tag.clone(),
        };
        self.job = Some(Job::spawn(spec, fork)?);
        Ok(())
    }
}

impl WsTrait for Conn {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        let target = match self.target(req) {
            Ok(t) => t,
            Err(refusal) => return Ok(refusal),
        };
        let Some(fork) = self.shared.forks.reserve() else {
            log::warn!("{}: --max-forks {} reached: 503", self.tag, self.shared.opts.max_forks);
            return Ok(
                Response::text(503, "too many programs running; try again later\n").with_header("Retry-After", "1")
            );
        };
        let accept = WsHandshake::build_request(req)?;
        if let Err(e) = self.start(req, target, fork) {
            log::warn!("{}: cannot start the program: {e}", self.tag);
            return Ok(Response::text(500, "cannot start the program\n"));
        }
        Ok(accept)
    }

    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        let job = self.job.as_mut().ok_or_else(|| Error::Application("no program for this connection".into()))?;
        job.attach(shake.sender);
        let mut option = WsOption::default();
        // The client's Close is answered after the program's last output.
        option.defer_close_reply();
        Ok(Some(option))
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        let Some(job) = &mut self.job else { return Ok(()) };
        let mut data = match msg {
            OwnedMessage::Text(s) => s.into_bytes(),
            OwnedMessage::Binary(b) => b,
            OwnedMessage::Close(close) => {
                job.client_closed(close);
                return Ok(());
            }
            _ => return Ok(()),
        };
        if !self.shared.opts.binary {
            data.push(b'\n');
        }
        job.write_input(data, self.shared.opts.config.write_timeout)
    }

    fn on_close(&mut self, reason: &Option<CloseData>) {
        if let Some(job) = &mut self.job {
            log::debug!("{}: connection closed ({reason:?}), program {:?}", self.tag, job.exit());
            job.end();
        }
    }

    fn on_error(&mut self, err: Error) {
        log::debug!("{}: {err}", self.tag);
    }
}
