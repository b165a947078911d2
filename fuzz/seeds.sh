#!/usr/bin/env bash
# Writes a few tiny seed inputs into fuzz/corpus/<target>/ (git-ignored):
# the RFC 6455 §5.7 example frames and the §1.3 handshake. The fuzzer grows
# the corpus from these; nothing large is kept in git.
#
# Decoder inputs start with a control byte (see src/decoder.rs): 0x00 is
# "small config, whole stream"; 0x06 is "small config, 3 chunk sizes follow";
# 0x01 picks the tiny config, 0x10 the open one.
set -euo pipefail
cd "$(dirname "$0")"

seed() { # seed TARGET NAME BYTES (printf %b escapes)
  mkdir -p "corpus/$1"
  printf '%b' "$3" >"corpus/$1/$2"
}

# RFC 6455 §5.7, masked (what a server receives).
hello_m='\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58'
pong_m='\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58'
close_m='\x88\x82\x37\xfa\x21\x3d\x34\x12'
seed decoder_server hello "\x00$hello_m"
seed decoder_server pong "\x00$pong_m"
seed decoder_server hello-chunked "\x06\x01\x02\x05$hello_m$hello_m"
# "Hel" + ping + "lo" + close 1000, masked with key 0.
seed decoder_server fragments '\x00\x01\x83\0\0\0\0Hel\x89\x80\0\0\0\0\x80\x82\0\0\0\0lo'"$close_m"
seed decoder_server binary-256 "\x00\x82\xfe\x01\x00\0\0\0\0$(printf 'x%.0s' {1..256})"

# RFC 6455 §5.7, unmasked (what a client receives).
seed decoder_client hello '\x00\x81\x05Hello'
seed decoder_client fragments '\x00\x01\x03Hel\x89\x05Hello\x80\x02lo\x88\x02\x03\xe8'
seed decoder_client hello-chunked '\x06\x01\x02\x05\x81\x05Hello\x81\x05Hello'
seed decoder_client binary-256 "\x00\x82\x7e\x01\x00$(printf 'y%.0s' {1..256})"
seed decoder_client binary-64k-header '\x00\x82\x7f\0\0\0\0\0\x01\0\0'
# Open limits (0x10): a frame declaring 1 TiB, of which 4 bytes arrive.
seed decoder_client declared-1tib '\x10\x82\x7f\0\0\x01\0\0\0\0\0abcd'
seed decoder_server declared-1tib '\x10\x82\xff\0\0\x01\0\0\0\0\0\0\0\0\0abcd'
seed decoder_client close-reason '\x01\x88\x04\x03\xe8ok'

# RFC 6455 §1.3 handshake.
seed request_parser rfc '''GET /chat HTTP/1.1\r
Host: server.example.com\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
Origin: http://example.com\r
Sec-WebSocket-Protocol: chat, superchat\r
Sec-WebSocket-Version: 13\r
\r
\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58'
seed request_parser plain 'POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc'
seed response_parser rfc '''HTTP/1.1 101 Switching Protocols\r
Upgrade: websocket\r
Connection: Upgrade\r
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r
Sec-WebSocket-Protocol: chat\r
\r
'
seed response_parser refusal 'HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n'
seed response_parser url 'ws://[::1]:9001/echo?x=1'
seed response_parser url-wss 'wss://Example.com/caf\xc3\xa9'

# permessage-deflate (RFC 7692 §7.2.3): "Hello" compressed; the same twice
# with context takeover; a stored block; two messages; a final block.
seed inflate hello '\x00\xf2\x48\xcd\xc9\xc9\x07\x00'
seed inflate hello-text-takeover '\x08\xf2\x48\xcd\xc9\xc9\x07\x00\xfe\xfe\xf2\x00\x11\x00\x00'
seed inflate stored '\x04\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00'
seed inflate two-blocks-fragmented '\x14\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00'
seed inflate final-block '\x0c\xf3\x48\xcd\xc9\xc9\x07\x00'
