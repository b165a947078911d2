//! permessage-deflate over real sockets: negotiation as a peer sees it,
//! and every rule of RFC 7692 broken on purpose, each with the exact close
//! code that comes back and a fresh client still served afterwards. Frames
//! are made by hand, compressed with flate2.

#![cfg(feature = "deflate")]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use support::*;
use syncws::{Client, Config, DeflateConfig, Error, OwnedMessage};

const TRAILER: [u8; 4] = [0, 0, 0xff, 0xff];

/// `data` as a permessage-deflate payload: raw DEFLATE, sync flush,
/// trailer stripped (RFC 7692 §7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut rest = data;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity());
        }
        let before = z.total_in();
        z.compress_vec(rest, &mut out, FlushCompress::Sync).unwrap();
        rest = &rest[(z.total_in() - before) as usize..];
        if rest.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&TRAILER));
    out.truncate(out.len() - 4);
    out
}

/// A permessage-deflate payload inflated (a fresh 15-bit window).
fn inflate(data: &[u8]) -> Vec<u8> {
    let mut z = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&TRAILER);
    let mut out = Vec::with_capacity(1 << 20);
    z.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}

fn deflate_server(config: Config) -> (syncws::Running, SocketAddr) {
    let s = echo_server(config.deflate(Some(DeflateConfig::default())));
    let addr = s.local_addr();
    (s, addr)
}

/// A raw connection whose upgrade offered `offer` (if any); with the 101's
/// `Sec-WebSocket-Extensions` answer.
fn raw_with(addr: SocketAddr, offer: Option<&str>) -> (TcpStream, Option<String>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let line = offer.map(|o| format!("Sec-WebSocket-Extensions: {o}"));
    let extra: Vec<&str> = line.iter().map(String::as_str).collect();
    s.write_all(upgrade_request("/", &extra).as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let answer = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("sec-websocket-extensions:").map(|v| v.trim().to_owned()));
    (s, answer)
}

fn deflated_ws(addr: SocketAddr) -> TcpStream {
    let (s, answer) = raw_with(addr, Some("permessage-deflate"));
    assert!(answer.is_some_and(|a| a.starts_with("permessage-deflate")));
    s
}

/// A fresh client with compression is still echoed, as is one without.
fn still_serves_deflate(addr: SocketAddr) {
    let config = Config::default().deflate(Some(DeflateConfig::default()));
    let mut c = Client::builder().url(&format!("ws://{addr}/")).unwrap().config(config).connect().unwrap();
    let big = OwnedMessage::Text("still here? ".repeat(500));
    c.send(big.clone()).unwrap();
    assert_eq!(c.read().unwrap(), big);
    still_serves(addr);
}

/// Sends `bytes` on a connection that negotiated compression and expects a
/// Close with `code`.
fn expect_close(config: Config, bytes: &[u8], code: u16) {
    let (_server, addr) = deflate_server(config);
    let mut s = deflated_ws(addr);
    s.write_all(bytes).unwrap();
    assert_eq!(read_close_code(&mut s), Some(code), "for {:x?}", &bytes[..bytes.len().min(16)]);
    still_serves_deflate(addr);
}

// ---------------------------------------------------------------- RSV1 rules

#[test]
fn rsv1_without_the_extension_negotiated_1002() {
    let z = deflate(b"hello hello hello");
    // A deflate server, a client that did not offer it.
    let (_server, addr) = deflate_server(Config::default());
    let (mut s, answer) = raw_with(addr, None);
    assert_eq!(answer, None);
    s.write_all(&client_frame(true, 0b100, 1, &z, true)).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1002));
    still_serves_deflate(addr);
    // A server without deflate, a client that offered it.
    let server = echo_server(Config::default());
    let (mut s, answer) = raw_with(server.local_addr(), Some("permessage-deflate"));
    assert_eq!(answer, None, "not configured: not answered");
    s.write_all(&client_frame(true, 0b100, 1, &z, true)).unwrap();
    assert_eq!(read_close_code(&mut s), Some(1002));
    still_serves(server.local_addr());
}

#[test]
fn rsv1_on_a_continuation_frame_1002() {
    let z = deflate(&b"fragmented and compressed ".repeat(20));
    let (a, b) = z.split_at(z.len() / 2);
    let mut bytes = client_frame(false, 0b100, 1, a, true);
    bytes.extend(client_frame(true, 0b100, 0, b, true));
    expect_close(Config::default(), &bytes, 1002);
}

#[test]
fn rsv1_on_a_control_frame_1002() {
    for opcode in [0x9, 0xa, 0x8] {
        expect_close(Config::default(), &client_frame(true, 0b100, opcode, b"", true), 1002);
    }
}

#[test]
fn rsv2_and_rsv3_stay_1002_with_deflate() {
    let z = deflate(b"hello");
    for rsv in [0b010, 0b001, 0b110, 0b111] {
        expect_close(Config::default(), &client_frame(true, rsv, 1, &z, true), 1002);
    }
}

/// Data that is not DEFLATE: 1007 (RFC 6455 §7.4.1, "data within a
/// message that was not consistent with the type of the message"), as
/// Node's ws answers; RFC 7692 names no code.
#[test]
fn undecodable_compressed_data_1007() {
    // BTYPE 11 (reserved), a stored block whose lengths disagree, a match
    // reaching back before the first byte. (Data merely cut short inside
    // a block cannot be told from a shorter message: it inflates to a
    // prefix, as it does with zlib in Python websockets and Node's ws.)
    for garbage in [&[0xff, 0xff, 0xff][..], &[0x00, 0x05, 0x00, 0x00, 0x00, b'h'], &[0x02, 0x02, 0x00]] {
        expect_close(Config::default(), &client_frame(true, 0b100, 2, garbage, true), 1007);
    }
}

#[test]
fn compressed_text_that_is_not_utf8_1007() {
    let mut bad = b"caf".repeat(50);
    bad.extend_from_slice(&[0xc3, 0x28]);
    expect_close(Config::default(), &client_frame(true, 0b100, 1, &deflate(&bad), true), 1007);
}

#[test]
fn inflating_past_max_message_size_1009() {
    let config = Config::default().max_message_size(64 << 10);
    let z = deflate(&vec![0u8; 1 << 20]);
    assert!(z.len() < 2 << 10);
    expect_close(config.clone(), &client_frame(true, 0b100, 2, &z, true), 1009);
    // The same split into fragments.
    let (a, b) = z.split_at(z.len() / 2);
    let mut bytes = client_frame(false, 0b100, 2, a, true);
    bytes.extend(client_frame(true, 0, 0, b, true));
    expect_close(config, &bytes, 1009);
}

// ---------------------------------------------------------------- negotiation

/// An offer that breaks a rule is declined: 101 without the extension,
/// the connection goes on uncompressed, and RSV1 is then a 1002.
#[test]
fn invalid_or_duplicate_offers_are_declined() {
    let (_server, addr) = deflate_server(Config::default());
    for offer in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover=yes",
        "permessage-deflate; unknown_parameter",
    ] {
        let (mut s, answer) = raw_with(addr, Some(offer));
        assert_eq!(answer, None, "{offer}");
        let big = "uncompressed echo ".repeat(200);
        s.write_all(&client_frame(true, 0, 1, big.as_bytes(), true)).unwrap();
        let (first, payload) = read_server_frame(&mut s);
        assert_eq!((first, payload), (0x81, big.into_bytes()), "{offer}: echoed uncompressed");
        s.write_all(&client_frame(true, 0b100, 1, &deflate(b"x"), true)).unwrap();
        assert_eq!(read_close_code(&mut s), Some(1002), "{offer}");
    }
    still_serves_deflate(addr);
}

/// Of a list, the server takes the first acceptable offer, and only one.
#[test]
fn one_offer_of_a_list_is_taken() {
    let (_server, addr) = deflate_server(Config::default());
    let (_s, answer) = raw_with(
        addr,
        Some("permessage-deflate; bogus, permessage-deflate; server_max_window_bits=10, permessage-deflate"),
    );
    let answer = answer.unwrap();
    assert_eq!(answer.matches("permessage-deflate").count(), 1, "{answer}");
    assert!(answer.contains("server_max_window_bits=10"), "{answer}");
}

/// A client may ask for `server_max_window_bits=8` (Autobahn 13.3 does):
/// accepted, and the server then sends uncompressed, while it still
/// inflates what the client compresses.
#[test]
fn window_bits_8_is_accepted_and_answered_uncompressed() {
    let (_server, addr) = deflate_server(Config::default());
    let (mut s, answer) = raw_with(addr, Some("permessage-deflate; server_max_window_bits=8"));
    assert!(answer.unwrap().contains("server_max_window_bits=8"));
    let big = "compressible ".repeat(500);
    s.write_all(&client_frame(true, 0b100, 1, &deflate(big.as_bytes()), true)).unwrap();
    let (first, payload) = read_server_frame(&mut s);
    assert_eq!(first, 0x81, "RSV1 clear");
    assert_eq!(payload, big.as_bytes());
}

/// The ordinary case by hand: a compressed message in, a compressed
/// message out (RSV1 on the server's frame), readable with a fresh window
/// since the server resets its context by default.
#[test]
fn compressed_echo_by_hand() {
    let (_server, addr) = deflate_server(Config::default());
    let mut s = deflated_ws(addr);
    let big = "compressible ".repeat(500);
    for _ in 0..3 {
        s.write_all(&client_frame(true, 0b100, 1, &deflate(big.as_bytes()), true)).unwrap();
        let (first, payload) = read_server_frame(&mut s);
        assert_eq!(first, 0xc1, "FIN, RSV1, text");
        assert!(payload.len() < 200, "{}", payload.len());
        assert_eq!(inflate(&payload), big.as_bytes());
    }
    // Below the threshold: uncompressed.
    s.write_all(&client_frame(true, 0, 1, b"short", true)).unwrap();
    assert_eq!(read_server_frame(&mut s), (0x81, b"short".to_vec()));
}

// ---------------------------------------------------------------- client side

/// A server made by hand: answers the upgrade with `answer` (the
/// `Sec-WebSocket-Extensions` value, if any), writes `frames`, and returns
/// the close code of the client's Close, if one came.
fn fake_server(answer: Option<&'static str>, frames: Vec<u8>) -> (SocketAddr, thread::JoinHandle<Option<u16>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let head = read_head(&mut s);
        let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).expect("a key").trim().to_owned();
        let mut resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            syncws::handshake::accept_key(&key)
        );
        if let Some(a) = answer {
            resp.push_str(&format!("Sec-WebSocket-Extensions: {a}\r\n"));
        }
        resp.push_str("\r\n");
        s.write_all(resp.as_bytes()).unwrap();
        s.write_all(&frames).unwrap();
        // The client's Close: masked, code first.
        let mut h = [0u8; 2];
        loop {
            if s.read_exact(&mut h).is_err() {
                return None;
            }
            let len = usize::from(h[1] & 0x7f);
            let mut rest = vec![0u8; 4 + len];
            s.read_exact(&mut rest).ok()?;
            let (key, payload) = rest.split_at(4);
            let payload: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
            if h[0] & 0x0f == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    });
    (addr, handle)
}

fn deflate_client(addr: SocketAddr) -> syncws::Result<Client> {
    let config = Config::default().deflate(Some(DeflateConfig::default()));
    Client::builder().url(&format!("ws://{addr}/"))?.config(config).connect()
}

/// A server frame (unmasked).
fn server_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, rsv, opcode, payload, false)
}

#[test]
fn the_client_refuses_an_answer_it_did_not_offer_or_that_breaks_a_rule() {
    for answer in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; mystery=1",
        "permessage-deflate, permessage-deflate",
        "x-webkit-deflate-frame",
    ] {
        let (addr, server) = fake_server(Some(answer), Vec::new());
        match deflate_client(addr) {
            Err(Error::Handshake { status: 101, reason, .. }) => assert!(reason.contains("invalid"), "{reason}"),
            other => panic!("{answer}: {other:?}"),
        }
        let _ = server.join();
    }
    // Without deflate configured, any extension in the answer is refused.
    let (addr, server) = fake_server(Some("permessage-deflate"), Vec::new());
    assert!(matches!(Client::connect(&format!("ws://{addr}/")), Err(Error::Handshake { status: 101, .. })));
    let _ = server.join();
}

#[test]
fn the_client_reads_compressed_messages_and_closes_on_bad_ones() {
    let hello = deflate(b"Hello, compressed world");
    // A good message, then RSV1 on a continuation: 1002.
    let mut frames = server_frame(true, 0b100, 1, &hello);
    frames.extend(server_frame(false, 0b100, 1, &hello[..3]));
    frames.extend(server_frame(true, 0b100, 0, &hello[3..]));
    let (addr, server) = fake_server(Some("permessage-deflate"), frames);
    let mut c = deflate_client(addr).unwrap();
    assert_eq!(c.read().unwrap(), OwnedMessage::Text("Hello, compressed world".into()));
    assert!(matches!(c.read(), Err(Error::Protocol(syncws::ProtocolError::MisplacedRsv1))));
    assert_eq!(server.join().unwrap(), Some(1002));

    let (addr, server) = fake_server(Some("permessage-deflate"), server_frame(true, 0b100, 2, &[0xff, 0xff]));
    let mut c = deflate_client(addr).unwrap();
    assert!(matches!(c.read(), Err(Error::Deflate(_))));
    assert_eq!(server.join().unwrap(), Some(1007));

    // A compressed bomb past the client's limit: 1009.
    let bomb = deflate(&vec![0u8; 8 << 20]);
    let (addr, server) = fake_server(Some("permessage-deflate"), server_frame(true, 0b100, 2, &bomb));
    let config = Config::default().max_message_size(1 << 20).deflate(Some(DeflateConfig::default()));
    let mut c = Client::builder().url(&format!("ws://{addr}/")).unwrap().config(config).connect().unwrap();
    assert!(matches!(c.read(), Err(Error::Capacity { what: syncws::Limit::Message, .. })));
    assert_eq!(server.join().unwrap(), Some(1009));

    // RSV1 from a server that did not agree to compress: 1002.
    let (addr, server) = fake_server(None, server_frame(true, 0b100, 1, &hello));
    let mut c = deflate_client(addr).unwrap();
    assert!(matches!(c.read(), Err(Error::Protocol(syncws::ProtocolError::ReservedBits))));
    assert_eq!(server.join().unwrap(), Some(1002));
}

/// The server asks the client for a window of 8 bits, which zlib cannot
/// make: the client then sends uncompressed.
#[test]
fn the_client_sends_uncompressed_when_held_to_8_bits() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let head = read_head(&mut s);
        let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap().trim().to_owned();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=8\r\n\r\n",
            syncws::handshake::accept_key(&key)
        );
        s.write_all(resp.as_bytes()).unwrap();
        let mut h = [0u8; 2];
        s.read_exact(&mut h).unwrap();
        h[0]
    });
    let mut c = deflate_client(addr).unwrap();
    c.send(OwnedMessage::Text("compressible ".repeat(500))).unwrap();
    assert_eq!(server.join().unwrap(), 0x81, "FIN, text, RSV1 clear");
}
