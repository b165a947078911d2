//! The tools of the `syncws` command, as a library so tests can drive them.
//!
//! One module per tool, each built only on the public API of `syncws`:
//! [`echo`], [`client`], [`bridge`] (`ws2tcp` and `tcp2ws`), [`proxy`],
//! [`chat`], `exec` (a program per connection, Unix only), and the
//! benchmark's load generator [`loadgen`]. [`common`] holds the
//! [`Config`](syncws::Config) flags and the plain-HTTP routes shared by the
//! servers; [`static_files`] serves `--static DIR`.
//!
//! One `unsafe` call, `kill(2)` on a process group
//! (`exec::process::signal_group`), allowed there alone.
#![deny(unsafe_code)]

pub mod bridge;
pub mod chat;
pub mod client;
pub mod common;
pub mod echo;
#[cfg(unix)]
pub mod exec;
pub mod loadgen;
pub mod proxy;
pub mod pubsub;
pub mod static_files;
pub mod tls;

use std::io::Write;

/// Prints a line on standard output at once (scripts and tests wait for
/// it, such as the address a server listens on).
pub fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
