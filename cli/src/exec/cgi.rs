//! The environment of a program started for a connection: the CGI
//! variables a script expects (RFC 3875, as websocketd sets them), one
//! `HTTP_*` variable per request header, `PATH`, and the variables the
//! operator passes on with `--passenv`. Nothing else of the server's
//! environment.

use std::ffi::OsString;
use std::net::SocketAddr;

use syncws::Request;

/// `PATH` when the server has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What the environment is made from.
#[derive(Debug)]
pub struct CgiInput<'a> {
    /// The upgrade request.
    pub request: &'a Request,
    /// The client's address; `None` for a peer without one (a Unix
    /// socket's), which gets `REMOTE_ADDR` and `REMOTE_PORT` empty.
    pub peer: Option<SocketAddr>,
    /// The address the connection arrived on; `None` on a Unix socket,
    /// whose programs get `SERVER_PORT` empty.
    pub local: Option<SocketAddr>,
    /// `/NAME` under `--dir`, empty for a single command.
    pub script_name: &'a str,
    /// The decoded request path after the script name (`--dir`), or the
    /// whole decoded path.
    pub path_info: &'a str,
    /// Variables of the server's environment to pass on (`--passenv`),
    /// with their values.
    pub passed: &'a [(String, OsString)],
    /// The server's `PATH`, if it has one.
    pub path: Option<OsString>,
}

/// The program's whole environment, in the order set: `PATH`, the passed
/// variables, then the CGI and `HTTP_*` variables, which win over a
/// passed variable of the same name.
pub fn environment(input: &CgiInput<'_>) -> Vec<(String, OsString)> {
    let req = input.request;
    let mut env: Vec<(String, OsString)> = Vec::with_capacity(24 + req.headers.len());
    env.push(("PATH".into(), input.path.clone().unwrap_or_else(|| DEFAULT_PATH.into())));
    env.extend(input.passed.iter().cloned());
    let mut set = |name: &str, value: &str| env.push((name.to_owned(), value.into()));
    match input.peer {
        Some(peer) => {
            set("REMOTE_ADDR", &peer.ip().to_canonical().to_string());
            set("REMOTE_PORT", &peer.port().to_string());
        }
        // A peer without an address (a Unix socket's): REMOTE_ADDR is set
        // and empty, as RFC 3875 wants it always set, REMOTE_PORT too, so
        // that neither, passed on with --passenv, poses as the client's.
        None => {
            set("REMOTE_ADDR", "");
            set("REMOTE_PORT", "");
        }
    }
    let (server_name, _) = host_and_port(req.header("host").unwrap_or(""));
    let server_name = match (server_name, input.local) {
        ("", Some(local)) => local.ip().to_string(),
        (name, _) => name.to_owned(),
    };
    set("SERVER_NAME", &server_name);
    set("SERVER_PORT", &input.local.map_or(String::new(), |local| local.port().to_string()));
    set("SERVER_PROTOCOL", &format!("HTTP/1.{}", req.version));
    set("SERVER_SOFTWARE", concat!("syncws/", env!("CARGO_PKG_VERSION")));
    set("GATEWAY_INTERFACE", "CGI/1.1");
    set("REQUEST_METHOD", &req.method);
    set("REQUEST_URI", &req.path);
    set("SCRIPT_NAME", input.script_name);
    set("PATH_INFO", input.path_info);
    set("QUERY_STRING", req.path.split_once('?').map_or("", |(_, q)| q));
    for (name, value) in header_variables(req) {
        set(&name, &value);
    }
    env
}

/// One `HTTP_*` variable per header name (`User-Agent` becomes
/// `HTTP_USER_AGENT`), repeated headers joined with `, ` (cookies with
/// `; `).
///
/// Left out: names with characters other than letters, digits and `-`
/// (`X_Forwarded_For` would otherwise pass for `X-Forwarded-For`, whose
/// variable has the same name), and `Proxy`, whose `HTTP_PROXY` many HTTP
/// libraries would take as their proxy setting ("httpoxy").
pub fn header_variables(req: &Request) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in req.headers.iter() {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            continue;
        }
        if name.eq_ignore_ascii_case("proxy") {
            continue;
        }
        let var = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        match out.iter_mut().find(|(n, _)| *n == var) {
            Some((_, v)) => {
                v.push_str(if var == "HTTP_COOKIE" { "; " } else { ", " });
                v.push_str(value);
            }
            None => out.push((var, value.to_owned())),
        }
    }
    out
}

/// The host and port of a `Host` header (`[::1]:8080` gives `::1`).
fn host_and_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => ("", None),
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(env: &[(String, OsString)], name: &str) -> Option<String> {
        env.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.to_string_lossy().into_owned())
    }

    #[test]
    fn cgi_variables_and_headers() {
        let mut req = Request::new("GET", "/count/extra?n=3&x=%20");
        req.headers.append("Host", "example.com:8443");
        req.headers.append("User-Agent", "t/1");
        req.headers.append("Cookie", "a=1");
        req.headers.append("cookie", "b=2");
        req.headers.append("X-Many", "1");
        req.headers.append("X-Many", "2");
        req.headers.append("X_Sneaky", "no");
        req.headers.append("Proxy", "http://evil:1");
        let passed = vec![("LANG".to_owned(), OsString::from("C.UTF-8")), ("REMOTE_ADDR".to_owned(), "spoof".into())];
        let env = environment(&CgiInput {
            request: &req,
            peer: Some("[::ffff:10.1.2.3]:5555".parse().unwrap()),
            local: Some("127.0.0.1:9000".parse().unwrap()),
            script_name: "/count",
            path_info: "/extra",
            passed: &passed,
            path: None,
        });
        let want = [
            ("PATH", DEFAULT_PATH),
            ("LANG", "C.UTF-8"),
            ("REMOTE_ADDR", "10.1.2.3"),
            ("REMOTE_PORT", "5555"),
            ("SERVER_NAME", "example.com"),
            ("SERVER_PORT", "9000"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/count/extra?n=3&x=%20"),
            ("SCRIPT_NAME", "/count"),
            ("PATH_INFO", "/extra"),
            ("QUERY_STRING", "n=3&x=%20"),
            ("HTTP_HOST", "example.com:8443"),
            ("HTTP_USER_AGENT", "t/1"),
            ("HTTP_COOKIE", "a=1; b=2"),
            ("HTTP_X_MANY", "1, 2"),
        ];
        for (name, value) in want {
            assert_eq!(get(&env, name).as_deref(), Some(value), "{name}");
        }
        assert!(get(&env, "SERVER_SOFTWARE").unwrap().starts_with("syncws/"));
        assert_eq!(get(&env, "HTTP_X_SNEAKY"), None);
        assert_eq!(get(&env, "HTTP_PROXY"), None);
    }

    /// A peer without an address, on a Unix socket: `REMOTE_ADDR` and
    /// `REMOTE_PORT` empty, even when the server's own environment passes
    /// them on; `SERVER_NAME` from `Host`, `SERVER_PORT` empty.
    #[test]
    fn a_peer_without_an_address_has_an_empty_remote_addr() {
        let mut req = Request::new("GET", "/");
        req.headers.append("Host", "localhost");
        let passed = vec![("REMOTE_ADDR".to_owned(), OsString::from("spoof")), ("REMOTE_PORT".to_owned(), "1".into())];
        let env = environment(&CgiInput {
            request: &req,
            peer: None,
            local: None,
            script_name: "",
            path_info: "/",
            passed: &passed,
            path: None,
        });
        assert_eq!(get(&env, "REMOTE_ADDR").as_deref(), Some(""));
        assert_eq!(get(&env, "REMOTE_PORT").as_deref(), Some(""));
        assert_eq!(get(&env, "SERVER_NAME").as_deref(), Some("localhost"));
        assert_eq!(get(&env, "SERVER_PORT").as_deref(), Some(""));
    }

    #[test]
    fn host_header_forms() {
        assert_eq!(host_and_port("a.b:80"), ("a.b", Some("80")));
        assert_eq!(host_and_port("a.b"), ("a.b", None));
        assert_eq!(host_and_port("[::1]:8080"), ("::1", Some("8080")));
        assert_eq!(host_and_port("[::1"), ("", None));
    }
}
