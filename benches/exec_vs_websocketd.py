#!/usr/bin/env python3
"""`syncws exec` side by side with websocketd (issue 20): the same program,
`cat`, behind both, on loopback, driven by the same load generator
(`syncws bench`, which checks every echo).

    cargo build --release -p syncws-cli
    python3 benches/exec_vs_websocketd.py            # about 4 minutes
    python3 benches/exec_vs_websocketd.py --quick    # about 1 minute

Measured, per server, medians over the rounds (the servers alternate within
each round, each started fresh for each measurement):

- messages per second through `cat`, 32-byte text messages: ping-pong (one
  message in flight per connection) and pipelined (16 in flight) over 1 and
  64 connections; the server process's CPU per message (not cat's);
- memory per connection with `--idle-conns` idle connections held: the
  server's resident memory, and the proportional set size (PSS, shared
  pages split between the processes that share them) of the server and
  all its programs together, minus the same before the clients came.

Installs Debian's `websocketd` with apt-get when it is missing. Writes
`bench-results/exec-vs-websocketd-DATE.md` (the table, the machine, its
load) and `.json` (every raw report). Plain Python 3, no packages; every
server is started on a free loopback port and killed by its PID."""

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ensure_websocketd():
    exe = shutil.which("websocketd")
    if exe:
        return exe
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("websocketd missing: installing Debian's package", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.call(sudo + ["apt-get", "install", "-y", "-qq", "websocketd"], env=env) != 0:
        subprocess.check_call(sudo + ["apt-get", "update", "-qq"], env=env)
        subprocess.check_call(sudo + ["apt-get", "install", "-y", "-qq", "websocketd"], env=env)
    exe = shutil.which("websocketd")
    if not exe:
        sys.exit("websocketd is still not on PATH after installing it")
    return exe


def websocketd_version(exe):
    """The Debian package's version (its binary says DEVBUILD), else --version."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "websocketd"], capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        return f"websocketd {out.stdout.strip()}"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True)
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "websocketd"


class Server:
    """One server process on a free loopback port, waited for by connecting."""

    def __init__(self, kind, syncws, websocketd):
        self.port = free_port()
        if kind == "syncws":
            cmd = [syncws, "exec", f"127.0.0.1:{self.port}", "--max-forks", "5000", "--", "cat"]
        else:
            # --loglevel=error: websocketd logs a line per connection at its
            # default level; syncws logs nothing per connection by default.
            cmd = [websocketd, f"--port={self.port}", "--address=127.0.0.1", "--loglevel=error", "cat"]
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.p.poll() is not None:
                    self.stop()
                    sys.exit(f"{kind} did not start: {' '.join(cmd)}")
                time.sleep(0.05)
        self.url = f"ws://127.0.0.1:{self.port}/"

    def children(self):
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[1]) == self.p.pid:
                out.append(int(pid))
        return out

    def stop(self):
        self.p.kill()
        self.p.wait()


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def bench(syncws, url, pid, args):
    cmd = [syncws, "bench", "--url", url, "--server-pid", str(pid)] + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"no report from {' '.join(cmd)}: {out.stdout} {out.stderr}")


def throughput(syncws, websocketd, kind, mode, conns, duration):
    server = Server(kind, syncws, websocketd)
    try:
        args = ["--mode", mode, "--conns", str(conns), "--text", "--size", "32",
                "--duration", str(duration), "--warmup", "1"]
        if mode == "pipelined":
            args += ["--in-flight", "16"]
        report = bench(syncws, server.url, server.p.pid, args)
    finally:
        server.stop()
    if report.get("errors"):
        print(f"  {kind}: {report['errors']} errors, first: {report.get('first_error')}", file=sys.stderr)
    return report


def idle_memory(syncws, websocketd, kind, conns, hold):
    server = Server(kind, syncws, websocketd)
    try:
        time.sleep(0.5)
        base_rss = status_kib(server.p.pid, "VmRSS")
        base_pss = pss_kib(server.p.pid)
        gen = subprocess.Popen([syncws, "bench", "--url", server.url, "--mode", "idle", "--conns", str(conns),
                                "--hold", str(hold), "--text", "--server-pid", str(server.p.pid)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Sample while the load generator holds its connections: once every
        # program is running and the count has settled.
        deadline = time.time() + 120
        while len(server.children()) < conns and time.time() < deadline and gen.poll() is None:
            time.sleep(0.1)
        time.sleep(1.0)
        kids = server.children()
        rss = status_kib(server.p.pid, "VmRSS")
        threads = status_kib(server.p.pid, "Threads")
        total_pss = pss_kib(server.p.pid) + sum(pss_kib(k) for k in kids)
        out, err = gen.communicate(timeout=600)
        report = next((json.loads(l) for l in out.splitlines() if l.startswith("{")), {})
    finally:
        server.stop()
    return {
        "programs": len(kids),
        "connected": report.get("connected"),
        "errors": report.get("errors"),
        "server_threads": threads,
        "server_rss_per_conn_kib": (rss - base_rss) / conns,
        "total_pss_per_conn_kib": (total_pss - base_pss) / conns,
        "report": report,
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--syncws", default=os.path.join(ROOT, "target/release/syncws"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--idle-conns", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s windows, 200 idle connections")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results"))
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.duration, a.idle_conns = 1, 2.0, 200
    if not os.path.exists(a.syncws):
        subprocess.check_call(["cargo", "build", "--release", "-p", "syncws-cli"], cwd=ROOT)
    websocketd = ensure_websocketd()
    load_before = os.getloadavg()
    started = time.time()

    scenarios = [("ping-pong", 1), ("ping-pong", 64), ("pipelined", 1), ("pipelined", 64)]
    kinds = ["syncws", "websocketd"]
    raw = {"throughput": [], "idle": []}
    for r in range(a.rounds):
        order = kinds if r % 2 == 0 else kinds[::-1]
        for mode, conns in scenarios:
            for kind in order:
                rep = throughput(a.syncws, websocketd, kind, mode, conns, a.duration)
                raw["throughput"].append({"round": r, "kind": kind, "mode": mode, "conns": conns, "report": rep})
                print(f"round {r + 1}: {kind:10} {mode:9} {conns:2} conns: {rep['msgs'] / rep['window_s']:10.0f} msgs/s"
                      f"  p50 {rep.get('p50_us')} µs  errors {rep.get('errors')}", file=sys.stderr)
        for kind in order:
            mem = idle_memory(a.syncws, websocketd, kind, a.idle_conns, 4)
            raw["idle"].append({"round": r, "kind": kind, **mem})
            print(f"round {r + 1}: {kind:10} idle {a.idle_conns}: {mem['server_rss_per_conn_kib']:.1f} KiB server RSS,"
                  f" {mem['total_pss_per_conn_kib']:.1f} KiB PSS with its programs per connection", file=sys.stderr)

    def spread(kind, mode, conns):
        vals = [t["report"]["msgs"] / t["report"]["window_s"] for t in raw["throughput"]
                if (t["kind"], t["mode"], t["conns"]) == (kind, mode, conns) and t["report"]["window_s"]]
        return f" ({min(vals) / 1000:.0f}k–{max(vals) / 1000:.0f}k)" if len(vals) > 1 else ""

    def tput(kind, mode, conns, key):
        vals = []
        for t in raw["throughput"]:
            if (t["kind"], t["mode"], t["conns"]) == (kind, mode, conns):
                rep = t["report"]
                if key == "msgs_per_s":
                    vals.append(rep["msgs"] / rep["window_s"] if rep["window_s"] else None)
                else:
                    vals.append(rep.get(key))
        return median(vals)

    def idle(kind, key):
        return median([i[key] for i in raw["idle"] if i["kind"] == kind])

    rows = []
    for mode, conns in scenarios:
        label = f"{mode}, {conns} conn{'s' if conns > 1 else ''}, 32 B"
        s, w = tput("syncws", mode, conns, "msgs_per_s"), tput("websocketd", mode, conns, "msgs_per_s")
        rows.append((f"{label}, msgs/s ↑", f"{s:,.0f}{spread('syncws', mode, conns)}",
                     f"{w:,.0f}{spread('websocketd', mode, conns)}", f"{s / w:.2f}×"))
        if conns == 1 and mode == "ping-pong":
            s, w = tput("syncws", mode, conns, "p50_us"), tput("websocketd", mode, conns, "p50_us")
            rows.append((f"{label}, p50 latency ↓", f"{s:.0f} µs", f"{w:.0f} µs", f"{s / w:.2f}×"))
        s = tput("syncws", mode, conns, "server_cpu_us_per_msg")
        w = tput("websocketd", mode, conns, "server_cpu_us_per_msg")
        if s and w:
            rows.append((f"{label}, server CPU per msg ↓", f"{s:.1f} µs", f"{w:.1f} µs", f"{s / w:.2f}×"))
    for key, what in [("server_rss_per_conn_kib", "server RSS"), ("total_pss_per_conn_kib", "PSS, server + its cat")]:
        s, w = idle("syncws", key), idle("websocketd", key)
        rows.append((f"{a.idle_conns} idle conns, {what} per conn ↓", f"{s:.0f} KiB", f"{w:.0f} KiB", f"{s / w:.2f}×"))

    today = datetime.date.today().isoformat()
    wall = time.time() - started
    version = websocketd_version(websocketd)
    lines = [
        f"# `syncws exec` and websocketd, {today}",
        "",
        f"The same program (`cat`) behind `syncws exec` and Debian's {version}, on loopback,",
        f"driven by `syncws bench` (every echo checked), 32-byte text messages; medians of {a.rounds} round(s),",
        f"{a.duration:g} s windows after 1 s of warm-up, servers alternating and started fresh for each measurement",
        "(messages per second: median, and the rounds' range in brackets).",
        "Server CPU is the server process's own (each `cat` costs the same behind both).",
        f"Memory: {a.idle_conns} idle connections held, each with its `cat`.",
        "",
        "| scenario | syncws exec | websocketd | syncws / websocketd |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}; load average before "
        f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"{wall:.0f} s in all. The load generator shares the cores with the server and its programs.",
        "",
        "Reproduce: `cargo build --release -p syncws-cli && python3 benches/exec_vs_websocketd.py`.",
        "",
    ]
    os.makedirs(a.out, exist_ok=True)
    md = os.path.join(a.out, f"exec-vs-websocketd-{today}.md")
    with open(md, "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(a.out, f"exec-vs-websocketd-{today}.json"), "w") as f:
        json.dump({"date": today, "websocketd": version, "rounds": a.rounds, "duration": a.duration,
                   "idle_conns": a.idle_conns, "raw": raw}, f, indent=1)
    print("\n".join(lines))
    print(f"written: {md}", file=sys.stderr)


if __name__ == "__main__":
    main()
