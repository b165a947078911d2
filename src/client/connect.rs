//! Name resolution and TCP connection under one deadline.
//!
//! The client's connect deadline covers everything from the name lookup
//! to the end of the upgrade. Two of those steps cannot be given a timeout
//! directly, so:
//!
//! - the name lookup (`getaddrinfo`, which blocks for as long as the
//!   system's resolver likes) runs on a short-lived thread of its own,
//!   which the caller waits for no longer than the deadline allows. A
//!   lookup that outlives the deadline is abandoned: its thread ends when
//!   the resolver answers, and nobody reads the answer. IP literals are
//!   not looked up at all.
//! - the addresses are tried one after the other, IPv6 and IPv4
//!   interleaved starting with the family the resolver put first (the
//!   order of RFC 8305 §4), each with an equal share of what remains of
//!   the deadline: one address that swallows packets cannot starve the
//!   others, and an address that refuses at once hands its share on.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use log::debug;

use crate::error::{Error, Phase, ProxyError, Result};

/// Stack of the lookup thread: glibc's resolver keeps its buffers on the
/// stack, so it is given more than a connection thread.
const LOOKUP_STACK: usize = 256 << 10;

/// What is left before `deadline`, or the timeout of `phase` if nothing is.
pub(crate) fn remaining(deadline: Instant, phase: Phase) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout { phase });
    }
    Ok(left)
}

/// The addresses of `host` (a DNS name or an IP literal, without brackets)
/// at `port`, in the order to try them. A lookup that does not answer
/// before `deadline` gives [`Error::Timeout`] for `phase`; a failed lookup
/// gives [`Error::Io`] with the resolver's message, or [`Error::Url`] if
/// the name has no address.
pub(crate) fn resolve(host: &str, port: u16, deadline: Instant, phase: Phase) -> Result<Vec<SocketAddr>> {
    resolve_with(host, port, deadline, phase, |name, port| {
        (name, port).to_socket_addrs().map(Iterator::collect::<Vec<_>>)
    })
}

/// [`resolve`] with `lookup` in place of the system's resolver (the tests
/// give one that never answers, or answers with addresses of their own).
fn resolve_with(
    host: &str,
    port: u16,
    deadline: Instant,
    phase: Phase,
    lookup: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
) -> Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let left = remaining(deadline, phase)?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    let lookup = std::sync::Arc::new(lookup);
    let on_thread = std::sync::Arc::clone(&lookup);
    let name = host.to_owned();
    let spawned = thread::Builder::new().name("syncws-lookup".into()).stack_size(LOOKUP_STACK).spawn(move || {
        // The receiver may have given up: the answer is then dropped.
        let _ = tx.send(on_thread(&name, port));
    });
    let found = match spawned {
        Ok(_) => match rx.recv_timeout(left) {
            Ok(found) => found,
            Err(_) => {
                debug!("looking up {host} did not finish in time");
                return Err(Error::Timeout { phase });
            }
        },
        Err(e) => {
            // No thread to be had: look up on this one, without a bound.
            debug!("no thread for the lookup of {host} ({e}); looking up inline");
            lookup(host, port)
        }
    };
    let addrs = found.map_err(|e| Error::Io(io::Error::new(e.kind(), format!("cannot resolve {host}: {e}"))))?;
    if addrs.is_empty() {
        return Err(Error::Url(format!("{host} resolves to no address")));
    }
    Ok(interleave(addrs))
}

/// IPv6 and IPv4 addresses alternated, starting with the family of the
/// first, each family keeping the resolver's order (RFC 8305 §4).
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
    let (mut first, mut second): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(first.len() + second.len());
    let (mut a, mut b) = (first.drain(..), second.drain(..));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Connects to the first of `addrs` that answers, each tried with an equal
/// share of what remains before `deadline`.
///
/// When none answers: [`Error::Timeout`] for `phase` if the deadline has
/// passed or the last address did not answer in its share, otherwise the last address's error, as [`Error::Io`] for a
/// direct connection, or [`ProxyError::Unreachable`] when connecting to a
/// proxy ([`Phase::Proxy`]).
pub(crate) fn connect_any(addrs: &[SocketAddr], deadline: Instant, phase: Phase) -> Result<TcpStream> {
    let mut last: Option<(SocketAddr, io::Error)> = None;
    for (i, addr) in addrs.iter().enumerate() {
        let left = remaining(deadline, phase)?;
        let tries_left = u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        let share = (left / tries_left).max(Duration::from_millis(1));
        match TcpStream::connect_timeout(addr, share) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                debug!("connecting to {addr} failed: {e}");
                last = Some((*addr, e));
            }
        }
    }
    let Some((addr, e)) = last else {
        return Err(Error::Url("no address to connect to".into()));
    };
    if Instant::now() >= deadline || crate::transport::is_timeout(&e) {
        return Err(Error::Timeout { phase });
    }
    Err(match phase {
        Phase::Proxy => Error::Proxy(ProxyError::Unreachable(format!("{addr}: {e}"))),
        _ => Error::from_io(e, phase),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_alternate_from_the_first_one() {
        let given = vec![addr("[::1]:1"), addr("[::2]:1"), addr("10.0.0.1:1"), addr("[::3]:1"), addr("10.0.0.2:1")];
        let want = vec![addr("[::1]:1"), addr("10.0.0.1:1"), addr("[::2]:1"), addr("10.0.0.2:1"), addr("[::3]:1")];
        assert_eq!(interleave(given), want);
        let v4_first = vec![addr("10.0.0.1:1"), addr("[::1]:1"), addr("10.0.0.2:1")];
        assert_eq!(interleave(v4_first.clone()), v4_first);
    }

    #[test]
    fn ip_literals_are_not_looked_up() {
        let far = Instant::now() + Duration::from_secs(5);
        assert_eq!(resolve("::1", 80, far, Phase::Connect).unwrap(), vec![addr("[::1]:80")]);
        // Even with the deadline gone: no lookup, nothing to wait for.
        let past = Instant::now();
        assert_eq!(resolve("127.0.0.1", 8, past, Phase::Connect).unwrap(), vec![addr("127.0.0.1:8")]);
    }

    #[test]
    fn a_deadline_already_gone_is_a_timeout_of_the_phase() {
        let past = Instant::now();
        assert!(matches!(resolve("localhost", 80, past, Phase::Proxy), Err(Error::Timeout { phase: Phase::Proxy })));
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(matches!(connect_any(&[dead], past, Phase::Connect), Err(Error::Timeout { phase: Phase::Connect })));
    }

    #[test]
    fn a_lookup_that_never_answers_is_a_timeout_of_the_phase() {
        // The resolver is stuck until the test lets it go, long after.
        let (release, stuck) = crossbeam_channel::bounded::<()>(0);
        let lookup = move |_: &str, _: u16| {
            let _ = stuck.recv();
            Ok(vec![addr("127.0.0.1:1")])
        };
        let deadline = Instant::now() + Duration::from_millis(50);
        let result = resolve_with("stuck.example", 80, deadline, Phase::Connect, lookup);
        assert!(matches!(result, Err(Error::Timeout { phase: Phase::Connect })), "{result:?}");
        drop(release);
    }

    #[test]
    fn every_resolved_address_is_tried_ipv6_and_ipv4() {
        // A name with two dead addresses of each family and one live one
        // of each: whichever family the resolver puts first, and wherever
        // the live address stands, the client gets there.
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").expect("bind [::1]");
        let dead = |a: &str| std::net::TcpListener::bind(a).unwrap().local_addr().unwrap();
        let (dead4, dead6) = ([dead("127.0.0.1:0"), dead("127.0.0.1:0")], [dead("[::1]:0"), dead("[::1]:0")]);
        let (live4, live6) = (v4.local_addr().unwrap(), v6.local_addr().unwrap());
        let far = || Instant::now() + Duration::from_secs(30);
        for (answer, live) in [
            (vec![dead6[0], dead6[1], dead4[0], dead4[1], live4], live4),
            (vec![dead4[0], dead4[1], dead6[0], dead6[1], live6], live6),
            (vec![dead6[0], live6, dead4[0]], live6),
        ] {
            let given = answer.clone();
            let addrs = resolve_with("dual.example", 0, far(), Phase::Connect, move |_, _| Ok(given.clone())).unwrap();
            assert_eq!(addrs.len(), answer.len(), "{addrs:?}");
            let stream = connect_any(&addrs, far(), Phase::Connect).unwrap_or_else(|e| panic!("{answer:?}: {e}"));
            assert_eq!(stream.peer_addr().unwrap(), live, "{answer:?}");
        }
        // None answers: the last address's error.
        let none = [dead6[0], dead4[0]];
        assert!(matches!(connect_any(&none, far(), Phase::Connect), Err(Error::Io(_))));
    }

    #[test]
    fn a_refused_proxy_is_unreachable_naming_the_address() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let far = Instant::now() + Duration::from_secs(5);
        match connect_any(&[dead], far, Phase::Proxy) {
            Err(Error::Proxy(ProxyError::Unreachable(why))) => assert!(why.starts_with(&dead.to_string()), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(connect_any(&[dead], far, Phase::Connect), Err(Error::Io(_))));
    }
}
