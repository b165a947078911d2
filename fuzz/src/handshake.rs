//! The HTTP upgrade: request and response heads as the peer sends them, and
//! `ws://` URLs as a user types them.

use syncws::handshake::{client, server, WsUrl};
use syncws::{Config, OriginPolicy, Request, Response};

/// A key the client side "sent" (the RFC 6455 §1.3 example).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The default limits, and small ones that inputs reach.
fn configs() -> [Config; 2] {
    [Config::default(), Config::default().max_head_size(256).max_headers(4)]
}

/// Limits no re-serialised head goes over.
fn roomy() -> Config {
    Config::default().max_head_size(1 << 20).max_headers(syncws::config::MAX_HEADERS_LIMIT)
}

/// Parse a request head; whatever parses goes through the server side of
/// the handshake without a panic, and a 101 built for it is one the client
/// side accepts after a trip through the wire format.
pub fn check_request(data: &[u8]) {
    for config in configs() {
        let Ok(parsed) = Request::parse(data, &config) else {
            continue;
        };
        let Some((req, len)) = parsed else {
            assert!(data.len() < config.max_head_size, "incomplete head over the limit not refused");
            continue;
        };
        assert!(len <= data.len() && len <= config.max_head_size, "head length {len}");
        assert!(req.headers.len() <= config.max_headers);
        let _ = (req.content_length(), req.body_length(&config), req.is_upgrade());
        for policy in [OriginPolicy::Any, OriginPolicy::SameHost, OriginPolicy::AllowList(vec!["http://a".into()])] {
            let _ = server::check_origin(&req, &policy);
        }
        let valid = server::validate_upgrade(&req);
        match server::build_response(&req) {
            Ok(resp) => {
                assert!(valid.is_ok(), "built a 101 for an invalid upgrade");
                accept_101(&req, resp);
            }
            Err(e) => {
                assert!(valid.is_err(), "valid upgrade but no 101: {e}");
                let refusal = reparse_response(&server::refusal(&e));
                assert_eq!(refusal.status, server::refusal(&e).status);
            }
        }
        // What parsed can be written back and parses to the same request.
        let mut out = Vec::new();
        req.write_to(&mut out);
        let (again, n) = Request::parse(&out, &roomy()).expect("re-parse").expect("complete");
        assert_eq!((n, &again), (out.len(), &req), "request changed through write_to");
    }
}

/// A 101 from `build_response` survives the wire and satisfies both sides.
fn accept_101(req: &Request, resp: Response) {
    assert_eq!(resp.status, 101);
    let resp = server::finish_response(req, resp).expect("finish_response refused build_response's 101");
    server::check_response(req, &resp).expect("check_response refused build_response's 101");
    let back = reparse_response(&resp);
    let key = req.header("sec-websocket-key").expect("a valid upgrade has a key");
    let offered: Vec<String> = req.protocols().into_iter().map(str::to_owned).collect();
    let chosen = client::check_response(&back, key, &offered).expect("client refused the server's 101");
    assert_eq!(chosen, None, "a subprotocol was invented");
}

/// Writes `resp` and parses it back, which must work and keep it.
fn reparse_response(resp: &Response) -> Response {
    let mut out = Vec::new();
    resp.write_to(&mut out);
    let (back, n) = Response::parse(&out, &roomy()).expect("own response re-parses").expect("complete");
    assert_eq!(n, out.len() - resp.body.len(), "head length of own response");
    assert_eq!((back.status, &back.reason), (resp.status, &resp.reason));
    back
}

/// Parse a response head and check it as the client side would; and try
/// the input as a `ws://` URL.
pub fn check_response(data: &[u8]) {
    let protocols = vec!["chat".to_owned(), "superchat".to_owned()];
    for config in configs() {
        let Ok(Some((resp, len))) = Response::parse(data, &config) else {
            continue;
        };
        assert!(len <= data.len() && len <= config.max_head_size, "head length {len}");
        let _ = resp.content_length();
        match client::check_response(&resp, KEY, &protocols) {
            Ok(chosen) => {
                assert_eq!(resp.status, 101);
                assert!(chosen.is_none_or(|p| protocols.contains(&p)), "accepted a protocol not offered");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        // write_to may add a Content-Length after the headers it was given.
        let back = reparse_response(&resp);
        let kept: Vec<_> = back.headers.iter().take(resp.headers.len()).collect();
        assert_eq!(kept, resp.headers.iter().collect::<Vec<_>>(), "headers changed through write_to");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_url(text);
    }
}

/// A URL that parses is well-formed and prints as a URL that parses to it.
fn check_url(text: &str) {
    let Ok(url) = WsUrl::parse(text) else {
        return;
    };
    assert!(!url.host.is_empty() && url.port != 0 && url.path.starts_with('/'), "{url:?}");
    assert!(url.path.is_ascii(), "path not percent-encoded: {url:?}");
    let _ = (url.host_header(), url.socket_addr_string());
    let again = WsUrl::parse(&url.to_string()).expect("a printed URL parses");
    assert_eq!(again, url, "URL changed through Display");
}
