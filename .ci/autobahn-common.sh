# Sourced by .ci/autobahn.sh and .ci/autobahn-full.sh (from the checkout's
# root, after AB is set): sets up wstest, builds the two testees with
# permessage-deflate, and starts examples/echo_server on a free port
# (SERVER_PORT, ECHO_PID; killed on exit). `port` prints a free port.
bash "$AB/setup.sh"
cargo build --release --features deflate --example echo_server --example autobahn_client

# Free ports, so a busy machine does not fail the run.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SERVER_PORT=$(port)
./target/release/examples/echo_server "127.0.0.1:$SERVER_PORT" &
ECHO_PID=$!
trap 'kill $ECHO_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$SERVER_PORT") 2>/dev/null && break
  sleep 0.1
done
