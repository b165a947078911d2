//! The proxy environment variables, read the way curl reads them.

use std::fmt;
use std::net::IpAddr;

use super::Proxy;
use crate::error::{Error, Result};
use crate::handshake::WsUrl;

/// The variables for `ws://` URLs, in order: lowercase only, as curl has
/// it (a CGI program gets the request's `Proxy:` header as `HTTP_PROXY`).
const FOR_WS: [&str; 1] = ["http_proxy"];
/// The variables for `wss://` URLs, in order.
const FOR_WSS: [&str; 2] = ["https_proxy", "HTTPS_PROXY"];
/// The variables for both, when the scheme's own are not set.
const FOR_ALL: [&str; 2] = ["all_proxy", "ALL_PROXY"];
/// The hosts that go direct.
const NO_PROXY: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// Proxy settings from the environment, as curl reads them.
///
/// - `ws://` URLs use `http_proxy` (lowercase only, as curl), `wss://` URLs
///   `https_proxy` or `HTTPS_PROXY`; both fall back on `all_proxy` or
///   `ALL_PROXY`. The lowercase name wins when both are set; an empty
///   value counts as unset.
/// - `no_proxy` or `NO_PROXY` lists the hosts that go direct, separated
///   by commas or spaces: `*` for every host; a name matches itself and
///   its subdomains (`example.com` and `.example.com` both match
///   `example.com` and `ws.example.com`, not `notexample.com`); an IP
///   address matches itself, and a CIDR block (`10.0.0.0/8`, `fd00::/8`)
///   the addresses in it. Names are never resolved to match addresses, and
///   loopback addresses are not exempt unless listed (`localhost`,
///   `127.0.0.1`, `::1`), as in curl. Entries with a port are not
///   supported.
/// - `ws+unix://` URLs never use a proxy.
///
/// The values are read once, by [`ProxyEnv::from_env`], and taken as
/// they are then; a value that is not a usable proxy URL is an error
/// naming the variable when a URL needs it. [`Debug`] shows which
/// variables are set, never their values (they may hold passwords).
///
/// ```
/// use syncws::handshake::WsUrl;
/// use syncws::proxy::ProxyEnv;
///
/// let env = ProxyEnv::from_lookup(|name| match name {
///     "https_proxy" => Some("http://proxy.corp:3128".into()),
///     "NO_PROXY" => Some("localhost,.internal,10.0.0.0/8".into()),
///     _ => None,
/// });
/// let via = |url: &str| env.proxy_for(&WsUrl::parse(url).unwrap()).unwrap().map(|p| p.to_string());
/// assert_eq!(via("wss://echo.example.com/").as_deref(), Some("http://proxy.corp:3128"));
/// assert_eq!(via("ws://echo.example.com/"), None); // no http_proxy
/// assert_eq!(via("wss://db.internal/"), None);
/// assert_eq!(via("wss://10.1.2.3/"), None);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// The variable (name, value) that `ws://` URLs use, if set.
    ws: Option<(&'static str, String)>,
    /// The variable that `wss://` URLs use, if set.
    wss: Option<(&'static str, String)>,
    /// The variable both fall back on, if set.
    all: Option<(&'static str, String)>,
    /// The hosts that go direct, if set.
    no_proxy: Option<(&'static str, String)>,
}

impl ProxyEnv {
    /// Reads the variables from this process's environment.
    pub fn from_env() -> ProxyEnv {
        ProxyEnv::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`, which gives a variable's
    /// value by its name (for tests, or an environment kept elsewhere).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ProxyEnv {
        let first = |names: &[&'static str]| {
            names.iter().find_map(|&name| lookup(name).filter(|v| !v.trim().is_empty()).map(|v| (name, v)))
        };
        ProxyEnv { ws: first(&FOR_WS), wss: first(&FOR_WSS), all: first(&FOR_ALL), no_proxy: first(&NO_PROXY) }
    }

    /// True when no proxy variable is set: every URL goes direct.
    pub fn is_empty(&self) -> bool {
        self.ws.is_none() && self.wss.is_none() && self.all.is_none()
    }

    /// The proxy for `url`, or `None` when it goes direct.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] naming the variable (never its value) when the one
    /// that applies is not a usable proxy URL (see [`Proxy::parse`]).
    pub fn proxy_for(&self, url: &WsUrl) -> Result<Option<Proxy>> {
        if url.unix_socket.is_some() {
            return Ok(None);
        }
        let scheme = if url.secure { &self.wss } else { &self.ws };
        let Some((name, value)) = scheme.as_ref().or(self.all.as_ref()) else {
            return Ok(None);
        };
        if let Some((_, list)) = &self.no_proxy {
            if no_proxy_matches(list, &url.host) {
                return Ok(None);
            }
        }
        match Proxy::parse(value.trim()) {
            Ok(proxy) => Ok(Some(proxy)),
            Err(Error::Url(why)) => Err(Error::Url(format!("environment variable {name}: {why}"))),
            Err(e) => Err(e),
        }
    }
}

impl fmt::Debug for ProxyEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |v: &Option<(&'static str, String)>| v.as_ref().map(|(name, _)| *name);
        f.debug_struct("ProxyEnv")
            .field("ws", &name(&self.ws))
            .field("wss", &name(&self.wss))
            .field("all", &name(&self.all))
            .field("no_proxy", &name(&self.no_proxy))
            .finish()
    }
}

/// Whether `host` (lowercase, an IPv6 address without brackets) is in the
/// `no_proxy` list `list`.
fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let ip = host.parse::<IpAddr>().ok();
    list.split([',', ' ', '\t']).filter(|entry| !entry.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        match ip {
            Some(ip) => ip_matches(entry, ip),
            None => name_matches(entry, host),
        }
    })
}

/// `entry` is `host` or a domain above it.
fn name_matches(entry: &str, host: &str) -> bool {
    let entry = entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')).unwrap_or(entry);
    let entry = entry.strip_suffix('.').unwrap_or(entry);
    if entry.is_empty() || entry.len() > host.len() {
        return false;
    }
    let (above, tail) = host.split_at(host.len() - entry.len());
    tail.eq_ignore_ascii_case(entry) && (above.is_empty() || above.ends_with('.'))
}

/// `entry` is the address `ip` or a CIDR block holding it.
fn ip_matches(entry: &str, ip: IpAddr) -> bool {
    let (addr, bits) = match entry.split_once('/') {
        Some((addr, bits)) => match bits.parse::<u8>() {
            Ok(bits) => (addr, Some(bits)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
    let Ok(net) = addr.parse::<IpAddr>() else { return false };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_matches(u32::from(net).into(), u32::from(ip).into(), 32, bits),
        (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_matches(u128::from(net), u128::from(ip), 128, bits),
        _ => false,
    }
}

/// The first `bits` (all `width` when `None`) of `net` and `ip`, numbers
/// of `width` bits, are the same.
fn prefix_matches(net: u128, ip: u128, width: u8, bits: Option<u8>) -> bool {
    let bits = bits.unwrap_or(width);
    if bits > width {
        return false;
    }
    if bits == 0 {
        return true;
    }
    let shift = u32::from(width - bits);
    (net >> shift) == (ip >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ProxyEnv::from_lookup(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn via(env: &ProxyEnv, url: &str) -> Option<String> {
        env.proxy_for(&WsUrl::parse(url).unwrap()).unwrap().map(|p| p.to_string())
    }

    #[test]
    fn each_scheme_reads_its_variables_as_curl_does() {
        let e = env(&[("http_proxy", "http://h:1"), ("HTTPS_PROXY", "http://s:2"), ("ALL_PROXY", "socks5://a:3")]);
        assert_eq!(via(&e, "ws://x/").as_deref(), Some("http://h:1"));
        assert_eq!(via(&e, "wss://x/").as_deref(), Some("http://s:2"));
        // HTTP_PROXY in capitals is not read; ALL_PROXY is the fallback.
        let e = env(&[("HTTP_PROXY", "http://h:1"), ("all_proxy", "socks5h://a:3")]);
        assert_eq!(via(&e, "ws://x/").as_deref(), Some("socks5h://a:3"));
        assert_eq!(via(&e, "wss://x/").as_deref(), Some("socks5h://a:3"));
        // Lowercase wins; empty is unset.
        let e = env(&[("https_proxy", "http://low:1"), ("HTTPS_PROXY", "http://up:1"), ("http_proxy", " ")]);
        assert_eq!(via(&e, "wss://x/").as_deref(), Some("http://low:1"));
        assert_eq!(via(&e, "ws://x/"), None);
        assert!(env(&[]).is_empty() && !e.is_empty());
        // Unix sockets never go through a proxy.
        let e = env(&[("all_proxy", "http://a:1")]);
        assert_eq!(via(&e, "ws+unix:///tmp/s.sock:/x"), None);
    }

    #[test]
    fn a_bad_value_names_its_variable_but_not_its_value() {
        let e = env(&[("HTTPS_PROXY", "https://user:hunter2@proxy")]);
        match e.proxy_for(&WsUrl::parse("wss://x/").unwrap()) {
            Err(Error::Url(why)) => {
                assert!(why.starts_with("environment variable HTTPS_PROXY: proxy url:"), "{why}");
                assert!(!why.contains("hunter2"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let debug = format!("{e:?}");
        assert!(debug.contains("HTTPS_PROXY") && !debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn no_proxy_names() {
        let list = "localhost, .example.com,*.corp.lan internal.";
        for host in ["localhost", "example.com", "ws.example.com", "a.b.example.com", "x.corp.lan", "internal"] {
            assert!(no_proxy_matches(list, host), "{host}");
        }
        for host in ["notexample.com", "example.com.evil", "corp.la", "localhost2", "127.0.0.1", "::1"] {
            assert!(!no_proxy_matches(list, host), "{host}");
        }
        assert!(no_proxy_matches("EXAMPLE.com", "ws.example.com"));
        assert!(no_proxy_matches("example.com", "ws.example.com."));
        assert!(no_proxy_matches("*", "anything"));
        assert!(no_proxy_matches("a.b, *", "anything"));
        assert!(!no_proxy_matches("", "anything"));
        assert!(!no_proxy_matches(",,", "anything"));
    }

    #[test]
    fn no_proxy_addresses_and_blocks() {
        let list = "127.0.0.1,[::1],10.0.0.0/8,fd00::/8,192.168.1.0/33,garbage/x";
        for host in ["127.0.0.1", "::1", "10.255.0.1", "fd12::1"] {
            assert!(no_proxy_matches(list, host), "{host}");
        }
        for host in ["127.0.0.2", "::2", "11.0.0.1", "fe80::1", "192.168.1.1", "localhost"] {
            assert!(!no_proxy_matches(list, host), "{host}");
        }
        assert!(no_proxy_matches("0.0.0.0/0", "8.8.8.8"));
        assert!(no_proxy_matches("::/0", "2001:db8::1"));
        assert!(!no_proxy_matches("0.0.0.0/0", "::1"));
        // Loopback is exempt only when listed.
        let e = env(&[("all_proxy", "http://p:1")]);
        assert_eq!(via(&e, "ws://127.0.0.1:9/").as_deref(), Some("http://p:1"));
        assert_eq!(via(&e, "ws://localhost:9/").as_deref(), Some("http://p:1"));
        let e = env(&[("all_proxy", "http://p:1"), ("NO_PROXY", "localhost,127.0.0.1,::1")]);
        for url in ["ws://127.0.0.1:9/", "ws://localhost:9/", "ws://[::1]:9/"] {
            assert_eq!(via(&e, url), None, "{url}");
        }
    }
}
