#!/usr/bin/env bash
# Installs the real peers of the permessage-deflate interop tests
# (tests/deflate_interop.rs), where those tests look for them:
#   target/interop-venv   Python venv with websockets (client and server)
#   target/interop-node   Node's ws (client and server)
#   /usr/bin/chromium     headless Chromium (Debian's package; needs root)
# Versions are pinned to the ones the tests were written against.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

WEBSOCKETS_VERSION=17.4
WS_VERSION=8.23.1

if ! target/interop-venv/bin/python -c "import websockets, sys; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')" 2>/dev/null; then
  python3 -m venv target/interop-venv
  target/interop-venv/bin/pip install -q "websockets==$WEBSOCKETS_VERSION"
fi

if ! [ -f target/interop-node/node_modules/ws/package.json ] ||
   ! grep -q "\"version\": \"$WS_VERSION\"" target/interop-node/node_modules/ws/package.json; then
  command -v npm >/dev/null || { sudo apt-get install -y -qq nodejs npm >/dev/null 2>&1 || apt-get install -y -qq nodejs npm >/dev/null; }
  mkdir -p target/interop-node
  (cd target/interop-node && [ -f package.json ] || npm init -y >/dev/null)
  (cd target/interop-node && npm install --silent --no-audit --no-fund "ws@$WS_VERSION")
fi

if ! command -v chromium >/dev/null; then
  sudo apt-get install -y -qq chromium >/dev/null 2>&1 || apt-get install -y -qq chromium >/dev/null
fi

echo "interop peers: websockets $WEBSOCKETS_VERSION, ws $WS_VERSION, $(chromium --version 2>/dev/null | head -1)"
