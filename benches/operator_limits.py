#!/usr/bin/env python3
"""The operator's check of issue 21, against a server binary under
`ulimit -n 1000`: 300 clients connect and leave (are descriptors and
threads given back, with no further accept?), then a burst of 1,123 clients
past the limit (are the extra ones answered 503, is a fresh client served
right after, how long is the log?).

    cargo build --release --example echo_server
    python3 benches/operator_limits.py target/release/examples/echo_server

Plain Python 3, no packages. Each run starts the server on a free loopback
port and kills it by its PID at the end."""

import os
import socket
import subprocess
import sys
import tempfile
import time

REQ = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
CLOSE = bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2])
HI = bytes([0x81, 0x82, 0, 0, 0, 0]) + b"hi"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, exe, log):
        self.port = free_port()
        self.log = log
        self.p = subprocess.Popen(["sh", "-c", f'ulimit -n 1000; exec "$0" 127.0.0.1:{self.port}', exe],
                                  stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.5)

    def fds(self):
        return len(os.listdir(f"/proc/{self.p.pid}/fd"))

    def threads(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])

    def stop(self):
        self.p.kill()
        self.p.wait()
        with open(self.log, "rb") as f:
            data = f.read()
        return data.count(b"\n"), len(data)


def handshake(port, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(REQ)
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d:
            break
        head += d
    return s, head


def churn(exe, log, n=300):
    srv = Server(exe, log)
    print(f"churn: baseline fds {srv.fds()} threads {srv.threads()}")
    socks = [handshake(srv.port, 10)[0] for _ in range(n)]
    for s in socks:
        try:
            s.sendall(CLOSE)
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
    t0 = time.time()
    for t in (0.5, 1, 2, 5, 10):
        time.sleep(max(0, t - (time.time() - t0)))
        print(f"churn: {t:>4}s after {n} clients left: fds {srv.fds()} threads {srv.threads()}")
    lines, size = srv.stop()
    print(f"churn: log {lines} lines")


def burst(exe, log, n=1123):
    srv = Server(exe, log)
    print(f"burst: baseline fds {srv.fds()} threads {srv.threads()}")
    socks, failed = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
            s.sendall(REQ)
            socks.append(s)
        except OSError:
            failed += 1
    answers = {"101": 0, "503": 0, "other": 0}
    for s in socks:
        try:
            d = s.recv(64)
            k = "101" if d.startswith(b"HTTP/1.1 101") else "503" if d.startswith(b"HTTP/1.1 503") else "other"
        except OSError:
            k = "other"
        answers[k] += 1
    print(f"burst: {n} clients, {failed} could not connect, answers {answers}, server fds {srv.fds()}")
    for s in socks:
        s.close()
    t0, served = time.time(), None
    while served is None and time.time() - t0 < 30:
        try:
            s, head = handshake(srv.port, 2)
            if head.startswith(b"HTTP/1.1 101"):
                s.sendall(HI)
                if s.recv(64) == bytes([0x81, 2]) + b"hi":
                    served = time.time() - t0
            s.close()
        except OSError:
            time.sleep(0.05)
    print(f"burst: a fresh client echoed {served if served is None else f'{served * 1000:.0f} ms'} after the burst left")
    for t in (1, 10):
        time.sleep(max(0, t - (time.time() - t0)))
        print(f"burst: {t:>2}s after the burst left: fds {srv.fds()} threads {srv.threads()}")
    lines, size = srv.stop()
    print(f"burst: log {lines} lines, {size} bytes")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    exe = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        churn(exe, os.path.join(tmp, "churn.log"))
        burst(exe, os.path.join(tmp, "burst.log"))


if __name__ == "__main__":
    main()
