#!/usr/bin/env bash
# The whole of Autobahn's permessage-deflate sections (12.* and 13.*: 216
# cases) against syncws, both sides, timed; CI runs a fixed subset of them
# (.ci/autobahn.sh). About half an hour a side on 2 cores.
#   .ci/autobahn-full.sh [PATH_TO_SHARED_TOOLS_AUTOBAHN]
# Writes bench-results/autobahn-deflate-full.md (the README's table) and
# exits 1 unless every case is OK on both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
AB="${1:-${SYNCWS_SHARED:-../shared}/tools/autobahn}"
export AUTOBAHN_VENV="${AUTOBAHN_VENV:-$PWD/target/autobahn-venv}"
OUT="$PWD/target/autobahn-full"
RESULT=bench-results/autobahn-deflate-full.md
CASES="12.*,13.*"

source .ci/autobahn-common.sh
start=$(date +%s)
AUTOBAHN_AGENT=syncws AUTOBAHN_OUT="$OUT/servers" AUTOBAHN_TIMEOUT=7200 \
  bash "$AB/run-server-suite.sh" "ws://127.0.0.1:$SERVER_PORT" "$CASES" || true
server_secs=$(( $(date +%s) - start ))
kill $ECHO_PID 2>/dev/null || true

start=$(date +%s)
AUTOBAHN_AGENT=syncws AUTOBAHN_PORT=$(port) AUTOBAHN_OUT="$OUT/clients" AUTOBAHN_TIMEOUT=7200 \
  bash "$AB/run-client-suite.sh" "$CASES" -- ./target/release/examples/autobahn_client || true
client_secs=$(( $(date +%s) - start ))

python3 - "$OUT" "$server_secs" "$client_secs" "$RESULT" <<'PY'
import json, os, sys
from collections import Counter, defaultdict
out, secs, result = sys.argv[1], {"servers": int(sys.argv[2]), "clients": int(sys.argv[3])}, sys.argv[4]
names = {"servers": "server (examples/echo_server)", "clients": "client (examples/autobahn_client)"}
lines = ["| side | cases | OK | other | wall time |", "| --- | --- | --- | --- | --- |"]
groups = defaultdict(dict)
ok = True
for side in ("servers", "clients"):
    try:
        cases = json.load(open(os.path.join(out, side, "index.json"))).get("syncws", {})
    except OSError:
        cases = {}
    mine = {c: r for c, r in cases.items() if c.split(".")[0] in ("12", "13")}
    counts = Counter(r.get("behavior", "FAILED") for r in mine.values())
    other = ", ".join("%s %d" % kv for kv in sorted(counts.items()) if kv[0] != "OK") or "none"
    ok = ok and len(mine) == 216 and counts["OK"] == 216
    lines.append("| %s | %d | %d | %s | %d min %02d s |" % (names[side], len(mine), counts["OK"], other, secs[side] // 60, secs[side] % 60))
    for c, r in mine.items():
        g = ".".join(c.split(".")[:2])
        groups[g].setdefault(side, Counter())[r.get("behavior", "FAILED")] += 1
lines += ["", "| parameter set | server | client |", "| --- | --- | --- |"]
key = lambda g: tuple(int(x) for x in g.split("."))
for g in sorted(groups, key=key):
    cell = lambda s: ", ".join("%s %d" % kv for kv in sorted(groups[g].get(s, Counter()).items())) or "-"
    lines.append("| %s | %s | %s |" % (g, cell("servers"), cell("clients")))
text = "\n".join(lines) + "\n"
open(result, "w").write(text)
print(text)
sys.exit(0 if ok else 1)
PY
