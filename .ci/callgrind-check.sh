#!/usr/bin/env bash
# The hot path's instruction counts (benches/callgrind.sh) against the
# commits that set bench-results/callgrind-baseline.txt, both measured here.
# The counts depend on the CPU features valgrind reports, so the baseline's
# figures are measured again on this machine rather than taken from the file;
# a scenario more than 3 % above its baseline commit fails the run. (Without
# this, ping-pong drifted 6.7 % over a week of changes each compared only
# with the commit before; benches/README.md, "Instruction counts".)
set -euo pipefail
cd "$(dirname "$0")/.."

# scenario -> the commit its baseline was measured at (the file's third field)
baseline=bench-results/callgrind-baseline.txt
declare -A base=()
while read -r s _ c; do
  [ -n "$c" ] || { echo "callgrind-check: $baseline: no commit for '$s'" >&2; exit 2; }
  base[$s]=$c
done < <(sed 's/#.*//' "$baseline" | awk 'NF')
[ ${#base[@]} -gt 0 ] || { echo "callgrind-check: $baseline: no scenarios" >&2; exit 2; }
work=target/callgrind-ci
for c in $(printf '%s\n' "${base[@]}" | sort -u); do
  if ! git cat-file -e "$c^{commit}" 2>/dev/null; then
    echo "callgrind-check: commit $c is not in this checkout's history (a shallow clone?); not checked" >&2
    exit 0
  fi
done
rm -rf "$work"
git worktree prune
mkdir -p "$work"
trap 'for d in "$work"/wt-*; do if [ -d "$d" ]; then git worktree remove --force "$d"; fi; done' EXIT

for c in $(printf '%s\n' "${base[@]}" | sort -u); do
  scenarios=$(for s in "${!base[@]}"; do if [ "${base[$s]}" = "$c" ]; then echo "$s"; fi; done | sort | paste -sd, -)
  git worktree add -q --detach "$work/wt-$c" "$c"
  echo "callgrind-check: $scenarios at the baseline commit $c" >&2
  benches/callgrind.sh --syncws "$work/wt-$c" --scenarios "$scenarios" --save "$work/$c.txt" >/dev/null
done
for s in "${!base[@]}"; do
  grep "^$s " "$work/${base[$s]}.txt"
done >"$work/baseline.txt"
echo "callgrind-check: this checkout" >&2
benches/callgrind.sh --compare "$work/baseline.txt"
