#!/usr/bin/env bash
# Exercises deploy/haproxy.cfg with Debian's haproxy: checks the file
# (`haproxy -c`), then runs it against three `syncws pubsub` nodes joined
# through a redis-server, all on their ports from the config (19001-19003,
# 18081) plus Redis on 16379, and shows through HAProxy:
#   - a WebSocket upgrade through HAProxy (tunnel mode), and a message
#     published on one node reaching a client of another node through it;
#   - each node's GET / topic counts (its own subscribers only);
#   - a node SIGKILLed: a new client through HAProxy lands on the others.
# Every process is ended by its PID on exit. Needs: haproxy, redis-server,
# and target/release/syncws (cargo build --release -p syncws-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SYNCWS_BIN:-target/release/syncws}
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

echo "== haproxy -c"
haproxy -v | sed -n 1p
haproxy -c -f deploy/haproxy.cfg

echo "== redis-server on 16379, three nodes on 19001-19003, haproxy on 18081"
redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no --daemonize no --logfile "$DIR/redis.log" &
PIDS+=($!)
wait_port 16379
for port in 19001 19002 19003; do
  "$BIN" pubsub 127.0.0.1:$port --redis redis://127.0.0.1:16379/ >"$DIR/node$port.out" 2>"$DIR/node$port.err" &
  PIDS+=($!)
done
NODE1=${PIDS[1]}
for port in 19001 19002 19003; do wait_port $port; done
haproxy -f deploy/haproxy.cfg -db >"$DIR/haproxy.log" 2>&1 &
PIDS+=($!)
wait_port 18081

echo "== a subscriber on node 19002 directly; a publisher through haproxy"
# The subscriber stays 4 s (its stdin open that long); the publisher
# connects through haproxy at once, sends one line after 1.5 s (it comes
# back to it too) and stays 1.5 s more; meanwhile each node's GET / shows where HAProxy
# put it.
sleep 4 | timeout 10 "$BIN" client ws://127.0.0.1:19002/news >"$DIR/sub.out" 2>"$DIR/sub.err" &
SUB=$!
(sleep 1.5; echo "hello through haproxy"; sleep 1.5) | timeout 10 "$BIN" client ws://127.0.0.1:18081/news >"$DIR/pub.out" 2>"$DIR/pub.err" &
PUB=$!
sleep 1
for port in 19001 19002 19003; do printf '%s GET / -> %s\n' $port "$(curl -s http://127.0.0.1:$port/)"; done
wait "$PUB" || true
echo "publisher (through haproxy) got back: $(cat "$DIR/pub.out")"
wait "$SUB" 2>/dev/null || true
echo "subscriber (node 19002, direct) got: $(cat "$DIR/sub.out")"
grep -q "hello through haproxy" "$DIR/sub.out"

echo "== node 19001 SIGKILLed; three new clients through haproxy"
kill -9 "$NODE1"
for i in 1 2 3; do
  echo "after kill $i" | timeout 10 "$BIN" client -1 ws://127.0.0.1:18081/news >"$DIR/after$i.out" 2>"$DIR/after$i.err" || true
  echo "client $i got back: $(cat "$DIR/after$i.out")"
  grep -q "after kill $i" "$DIR/after$i.out"
done
echo "== haproxy's log"
grep -v '^$' "$DIR/haproxy.log" | head -20 || true
echo "OK"
