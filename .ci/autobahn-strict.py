#!/usr/bin/env python3
"""Checks the permessage-deflate cases (12.*, 13.*) of an Autobahn report.

    autobahn-strict.py REPORT_DIR AGENT EXPECTED

The shared summary counts UNIMPLEMENTED as passing in sections 12 and 13 (a
testee without compression gets it there). syncws implements the extension,
so here every 12.*/13.* case must be OK, and there must be EXPECTED of them:
FAILED, UNIMPLEMENTED, NON-STRICT, INFORMATIONAL or a missing case fail the
check. Prints one line per parameter set (12.1 ... 13.7) and exits 1 on any
failure.
"""

import json
import os
import sys
from collections import defaultdict


def main():
    report, agent, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(os.path.join(report, "index.json"), encoding="utf-8") as f:
        cases = json.load(f).get(agent, {})
    groups = defaultdict(lambda: defaultdict(int))
    bad = []
    seconds = 0.0
    for cid, r in cases.items():
        if cid.split(".")[0] not in ("12", "13"):
            continue
        group = ".".join(cid.split(".")[:2])
        behavior = r.get("behavior", "FAILED")
        groups[group][behavior] += 1
        seconds += r.get("duration", 0) / 1000
        if behavior != "OK":
            bad.append("%s(%s)" % (cid, behavior))
    total = sum(sum(g.values()) for g in groups.values())
    key = lambda g: tuple(int(x) for x in g.split("."))
    for group in sorted(groups, key=key):
        counts = ", ".join("%s %d" % (b, n) for b, n in sorted(groups[group].items()))
        print("autobahn deflate: %-5s %s" % (group, counts))
    print("autobahn deflate: %d of %d expected 12.*/13.* cases, %.0f s in cases" % (total, expected, seconds))
    if bad:
        print("autobahn deflate: not OK: %s" % " ".join(sorted(bad)))
    if total != expected:
        print("autobahn deflate: expected %d cases, the report has %d" % (expected, total))
    return 1 if bad or total != expected else 0


if __name__ == "__main__":
    sys.exit(main())
