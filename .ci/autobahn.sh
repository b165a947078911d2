#!/usr/bin/env bash
# Runs the Autobahn suite against examples/echo_server (fuzzingclient mode)
# and examples/autobahn_client (fuzzingserver mode). Fails on any FAILED case.
#   .ci/autobahn.sh PATH_TO_SHARED_TOOLS_AUTOBAHN
set -euo pipefail
AB="$1"
cd "$(dirname "$0")/.."
export AUTOBAHN_VENV="${AUTOBAHN_VENV:-$PWD/target/autobahn-venv}"
OUT="$PWD/target/autobahn-reports"

bash "$AB/setup.sh"
cargo build --release --example echo_server --example autobahn_client

# Pick free ports, so a busy machine does not fail the run.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SERVER_PORT=$(port)
./target/release/examples/echo_server "127.0.0.1:$SERVER_PORT" &
ECHO_PID=$!
trap 'kill $ECHO_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$SERVER_PORT") 2>/dev/null && break
  sleep 0.1
done

start=$(date +%s)
AUTOBAHN_AGENT=syncws AUTOBAHN_OUT="$OUT/servers" bash "$AB/run-server-suite.sh" "ws://127.0.0.1:$SERVER_PORT"
echo "autobahn server suite: $(( $(date +%s) - start )) s"
kill $ECHO_PID 2>/dev/null || true

start=$(date +%s)
AUTOBAHN_AGENT=syncws AUTOBAHN_PORT=$(port) AUTOBAHN_OUT="$OUT/clients" \
  bash "$AB/run-client-suite.sh" -- ./target/release/examples/autobahn_client
echo "autobahn client suite: $(( $(date +%s) - start )) s"
