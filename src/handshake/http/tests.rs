use super::*;

const HEAD: &str = "GET /chat?x=1 HTTP/1.1\r\n\
    Host: localhost:8080\r\n\
    Upgrade: websocket\r\n\
    Connection: keep-alive, Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Protocol: chat, superchat\r\n\
    Sec-WebSocket-Protocol: v2\r\n\
    \r\n";

fn status<T: std::fmt::Debug>(r: Result<T>) -> u16 {
    match r {
        Err(Error::Handshake { status, .. }) => status,
        Err(Error::Capacity { what: Limit::Head | Limit::Headers, .. }) => 431,
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn headers_basics() {
    let mut h = Headers::new();
    assert!(h.is_empty());
    h.append("Via", "a");
    h.append("X-One", "1");
    h.append("via", "b, c");
    assert_eq!(h.len(), 3);
    assert_eq!(h.get("VIA"), Some("a"));
    assert_eq!(h.get_all("via").collect::<Vec<_>>(), ["a", "b, c"]);
    assert!(h.contains_token("via", " C "));
    assert!(!h.contains_token("via", "b, c"));
    assert!(!h.contains_token("x-two", "1"));
    h.insert("VIA", "d");
    assert_eq!(h.iter().collect::<Vec<_>>(), [("VIA", "d"), ("X-One", "1")]);
    h.insert("X-Two", "2");
    assert_eq!(h.get("x-two"), Some("2"));
    h.remove("x-one");
    assert_eq!(h.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["VIA", "X-Two"]);
    h.remove("absent");
    assert_eq!(h.len(), 2);
}

#[test]
fn parse_a_request() {
    let mut buf = HEAD.as_bytes().to_vec();
    buf.extend_from_slice(b"\x81\x85rest");
    let (req, len) = Request::parse(&buf, &Config::default()).unwrap().unwrap();
    assert_eq!(len, HEAD.len());
    assert_eq!(&buf[len..], b"\x81\x85rest");
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/chat?x=1");
    assert_eq!(req.version, 1);
    assert_eq!(req.headers.len(), 7);
    assert_eq!(req.header("HOST"), Some("localhost:8080"));
    assert_eq!(req.protocols(), ["chat", "superchat", "v2"]);
    assert!(req.is_upgrade());
    assert!(req.body.is_empty());
    assert_eq!(req.content_length().unwrap(), None);
    assert_eq!(req.body_length(&Config::default()).unwrap(), 0);

    let plain = Request::parse(b"GET / HTTP/1.0\r\n\r\n", &Config::default()).unwrap();
    let (plain, _) = plain.unwrap();
    assert_eq!(plain.version, 0);
    assert!(!plain.is_upgrade());
    assert!(plain.protocols().is_empty());
}

#[test]
fn every_partial_head_needs_more() {
    let config = Config::default();
    for n in 0..HEAD.len() {
        let got = Request::parse(&HEAD.as_bytes()[..n], &config);
        assert!(matches!(got, Ok(None)), "{n}: {got:?}");
    }
    let resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    for n in 0..resp.len() {
        let got = Response::parse(&resp.as_bytes()[..n], &config);
        assert!(matches!(got, Ok(None)), "{n}: {got:?}");
    }
    assert!(Response::parse(resp.as_bytes(), &config).unwrap().is_some());
}

#[test]
fn head_size_limit() {
    let config = Config::default().max_head_size(256);
    let filler = format!("X-Filler: {}\r\n", "a".repeat(300));
    let long = HEAD.replacen("\r\n\r\n", &format!("\r\n{filler}\r\n"), 1);
    assert_eq!(status(Request::parse(long.as_bytes(), &config)), 431);
    // Partial but already over the limit.
    assert_eq!(status(Request::parse(&long.as_bytes()[..257], &config)), 431);
    assert_eq!(status(Request::parse(&long.as_bytes()[..256], &config)), 431);
    assert!(matches!(Request::parse(&long.as_bytes()[..255], &config), Ok(None)));
    let resp = format!("HTTP/1.1 200 OK\r\n{filler}\r\n");
    assert_eq!(status(Response::parse(resp.as_bytes(), &config)), 431);
    // A head of exactly the limit is fine, even with bytes after it.
    let exact = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(256 - "GET / HTTP/1.1\r\nX: \r\n\r\n".len()));
    assert_eq!(exact.len(), 256);
    let mut buf = exact.clone().into_bytes();
    buf.extend_from_slice(&[0x81; 100]);
    let (_, len) = Request::parse(&buf, &config).unwrap().unwrap();
    assert_eq!(len, 256);
}

#[test]
fn header_count_limit() {
    let config = Config::default().max_headers(64);
    let head = |n: usize| {
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for i in 0..n {
            s.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        s + "\r\n"
    };
    let (req, _) = Request::parse(head(64).as_bytes(), &config).unwrap().unwrap();
    assert_eq!(req.headers.len(), 64);
    assert_eq!(status(Request::parse(head(65).as_bytes(), &config)), 431);
    let resp = head(65).replacen("GET / HTTP/1.1", "HTTP/1.1 200 OK", 1);
    assert_eq!(status(Response::parse(resp.as_bytes(), &config)), 431);
    let over = Config::default().max_headers(MAX_HEADERS_LIMIT + 10);
    assert_eq!(status(Request::parse(head(MAX_HEADERS_LIMIT + 1).as_bytes(), &over)), 431);
}

#[test]
fn malformed_heads_are_400() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / FTP/1.1\r\n\r\n",
        b"GET\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ];
    for buf in cases {
        let got = Request::parse(buf, &Config::default());
        assert_eq!(status(got), 400, "{:?}", String::from_utf8_lossy(buf));
    }
    match Request::parse(b"GET / HTTP/2.0\r\n\r\n", &Config::default()) {
        Err(Error::Handshake { reason, .. }) => assert!(reason.contains("version"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(status(Response::parse(b"HTTP/1.1 abc OK\r\n\r\n", &Config::default())), 400);
}

#[test]
fn content_length_table() {
    type Case<'a> = (&'a [&'a str], Result<Option<usize>, u16>);
    let cases: &[Case] = &[
        (&[], Ok(None)),
        (&["0"], Ok(Some(0))),
        (&["42"], Ok(Some(42))),
        (&["42", "42"], Ok(Some(42))),
        (&["42, 42"], Ok(Some(42))),
        (&["42", "43"], Err(400)),
        (&["-1"], Err(400)),
        (&["+1"], Err(400)),
        (&["1 2"], Err(400)),
        (&[""], Err(400)),
        (&["0x10"], Err(400)),
        (&["99999999999999999999999999"], Err(400)),
    ];
    for (values, want) in cases {
        let mut req = Request::new("POST", "/");
        for v in values.iter() {
            req.headers.append("Content-Length", *v);
        }
        let got = req.content_length().map_err(|e| status(Err::<(), _>(e)));
        assert_eq!(&got, want, "{values:?}");
    }
    let mut req = Request::new("POST", "/");
    req.headers.append("Transfer-Encoding", "chunked");
    assert_eq!(status(req.content_length()), 501);

    let mut req = Request::new("POST", "/");
    req.headers.append("Content-Length", "11");
    let config = Config::default().max_http_body(10);
    assert!(matches!(req.body_length(&config), Err(Error::Capacity { what: Limit::Body, size: 11, max: 10 })));
    assert_eq!(req.body_length(&config.max_http_body(11)).unwrap(), 11);

    let mut resp = Response::new(200);
    assert_eq!(resp.content_length().unwrap(), None);
    resp.headers.append("Content-Length", "5");
    assert_eq!(resp.content_length().unwrap(), Some(5));
    resp.headers.append("Transfer-Encoding", "chunked");
    assert_eq!(resp.content_length().unwrap(), None);
    assert_eq!(Response::new(204).content_length().unwrap(), Some(0));
    assert_eq!(Response::new(101).content_length().unwrap(), Some(0));
}

#[test]
fn responses_write_and_parse_back() {
    assert_eq!(Response::new(101).reason, "Switching Protocols");
    assert_eq!(Response::new(431).reason, "Request Header Fields Too Large");
    assert_eq!(Response::new(299).reason, "Unknown");

    let cases: &[(Response, &str)] = &[
        (Response::new(200), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        (Response::new(204), "HTTP/1.1 204 No Content\r\n\r\n"),
        (Response::new(304), "HTTP/1.1 304 Unknown\r\n\r\n"),
        (
            Response::new(101).with_header("Upgrade", "websocket"),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        ),
        (
            Response::text(404, "nope"),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 4\r\n\r\nnope",
        ),
        (
            Response::new(200).with_body(*b"{}", "application/json").with_header("X-A", "1"),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-A: 1\r\n\r\n{}",
        ),
        (
            Response::new(200).with_header("X-Evil", "a\r\nSet-Cookie: x").with_header("Bad:Name", "v"),
            "HTTP/1.1 200 OK\r\nX-Evil: a  Set-Cookie: x\r\nBad-Name: v\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    for (resp, want) in cases {
        let mut out = Vec::new();
        resp.write_to(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), *want);
        let (back, len) = Response::parse(&out, &Config::default()).unwrap().unwrap();
        assert_eq!(back.status, resp.status);
        assert_eq!(back.reason, resp.reason);
        assert_eq!(&out[len..], &resp.body[..]);
    }
}

#[test]
fn requests_write_and_parse_back() {
    let mut req = Request::new("POST", "/submit?a=1");
    req.headers.append("Host", "example.com");
    req.body = b"hello".to_vec();
    let mut out = Vec::new();
    req.write_to(&mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "POST /submit?a=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
    );
    let (back, len) = Request::parse(&out, &Config::default()).unwrap().unwrap();
    assert_eq!(back.content_length().unwrap(), Some(5));
    assert_eq!(&out[len..], b"hello");
    assert_eq!(back.method, "POST");
    assert_eq!(back.path, "/submit?a=1");
}

/// A small xorshift generator, so the test needs no dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn arbitrary_bytes_never_panic() {
    let config = Config::default().max_head_size(512).max_headers(8);
    let mut state = 0x9e37_79b9_7f4a_7c15;
    let alphabet = b"GET /HTP1.\r\n: \t\x00\xffUpgrade,websocket";
    for _ in 0..20_000 {
        let len = (next(&mut state) % 600) as usize;
        let mut buf: Vec<u8> = HEAD.bytes().collect();
        if next(&mut state) % 2 == 0 {
            buf.truncate(len);
            for _ in 0..(next(&mut state) % 8) {
                if buf.is_empty() {
                    break;
                }
                let i = (next(&mut state) as usize) % buf.len();
                buf[i] = alphabet[(next(&mut state) as usize) % alphabet.len()];
            }
        } else {
            buf = (0..len).map(|_| alphabet[(next(&mut state) as usize) % alphabet.len()]).collect();
        }
        if let Ok(Some((req, n))) = Request::parse(&buf, &config) {
            assert!(n <= buf.len() && n <= 512);
            let _ = (req.content_length(), req.protocols(), req.is_upgrade());
            let mut out = Vec::new();
            req.write_to(&mut out);
        }
        if let Ok(Some((resp, n))) = Response::parse(&buf, &config) {
            assert!(n <= buf.len());
            let _ = resp.content_length();
        }
    }
}
