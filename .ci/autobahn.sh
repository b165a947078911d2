#!/usr/bin/env bash
# Runs the Autobahn suite against examples/echo_server (fuzzingclient mode)
# and examples/autobahn_client (fuzzingserver mode), both built with
# permessage-deflate. Fails on any FAILED case, and on any 12.*/13.* case
# of the fixed deflate subset that is not OK (UNIMPLEMENTED included: the
# shared summary lets it pass, .ci/autobahn-strict.py does not).
#   .ci/autobahn.sh PATH_TO_SHARED_TOOLS_AUTOBAHN
# The whole of sections 12 and 13 (216 cases, about half an hour a side) is
# .ci/autobahn-full.sh's job.
set -euo pipefail
AB="$1"
cd "$(dirname "$0")/.."
export AUTOBAHN_VENV="${AUTOBAHN_VENV:-$PWD/target/autobahn-venv}"
OUT="$PWD/target/autobahn-reports"

# The deflate subset: every parameter set (12.1-12.5: five data sets;
# 13.1-13.7: context takeover or not, window bits default/8/15, a list of
# offers) at 16 B, 1 KiB (the compression threshold), 8 KiB, and 8 KiB in
# 256-byte fragments; plus 128 KiB messages in 32 KiB fragments (12.1.18,
# 13.7.18) and 128 KiB under an 8-bit window (13.3.10). About 80 s of cases a
# side on 2 cores (wstest's pure-Python compression is the bottleneck); with the
# default cases, about 2 minutes a side.
DEFLATE_CASES=$(python3 -c "print(','.join(['%d.%d.%d' % (s, g, y) for s, n in ((12, 5), (13, 7))
  for g in range(1, n + 1) for y in (1, 4, 6, 11)] + ['12.1.18', '13.3.10', '13.7.18']))")
DEFLATE_COUNT=51

source .ci/autobahn-common.sh

start=$(date +%s)
AUTOBAHN_AGENT=syncws AUTOBAHN_OUT="$OUT/servers" \
  bash "$AB/run-server-suite.sh" "ws://127.0.0.1:$SERVER_PORT" "+$DEFLATE_CASES"
python3 .ci/autobahn-strict.py "$OUT/servers" syncws "$DEFLATE_COUNT"
echo "autobahn server suite: $(( $(date +%s) - start )) s"
kill $ECHO_PID 2>/dev/null || true

start=$(date +%s)
AUTOBAHN_AGENT=syncws AUTOBAHN_PORT=$(port) AUTOBAHN_OUT="$OUT/clients" \
  bash "$AB/run-client-suite.sh" "+$DEFLATE_CASES" -- ./target/release/examples/autobahn_client
python3 .ci/autobahn-strict.py "$OUT/clients" syncws "$DEFLATE_COUNT"
echo "autobahn client suite: $(( $(date +%s) - start )) s"
