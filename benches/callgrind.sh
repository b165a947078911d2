#!/usr/bin/env bash
# Instructions per message on syncws's server side, counted by callgrind:
# a repeatable no-regression check for the hot path (benches/README.md,
# "Instruction counts").
#
#   benches/callgrind.sh                         measure, print "scenario  instr/msg"
#   benches/callgrind.sh --save FILE             ... and write the figures to FILE
#   benches/callgrind.sh --compare FILE          ... and compare with FILE: exit 1 if
#                                                any scenario is more than 3 % worse
#   benches/callgrind.sh --syncws DIR ...        measure the syncws checkout in DIR
#                                                (default: the one holding this script)
#
# Each scenario runs benches/src/bin/callgrind-echo.rs under callgrind twice,
# with N and 2N round trips; (I(2N) - I(N)) / N cancels the set-up (process
# start, handshake, close). Only the threads other than the main one (the
# tungstenite client) are counted: the server's connection thread and any
# thread the library would start for it.
set -euo pipefail

LIMIT=1.03 # a scenario fails --compare above this ratio to the baseline

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
syncws=$repo
save=
compare=
scenarios="pingpong echo64k pipe1k"
n_pingpong=5000
n_echo64k=500
n_pipe1k=250
# Messages per round trip: pipe1k writes a burst of 32 before reading the
# echoes (callgrind-echo.rs's PIPE1K_BURST); the others one.
burst_pingpong=1
burst_echo64k=1
burst_pipe1k=32
args=("$@")

usage() {
    sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    cat <<EOF

Options:
  --save FILE        write the figures (with date, versions, command) to FILE
  --compare FILE     print the ratio to FILE's figures; exit 1 above ${LIMIT}
  --syncws DIR       the syncws checkout to measure (default $repo)
  --scenarios LIST   comma-separated, from: pingpong,echo64k,pipe1k (default all)
  --n-pingpong N     round trips of the pingpong scenario's shorter run (default $n_pingpong)
  --n-echo64k N      round trips of the echo64k scenario's shorter run (default $n_echo64k)
  --n-pipe1k N       bursts of 32 of the pipe1k scenario's shorter run (default $n_pipe1k)
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
        --save) save=${2:?--save needs a file}; shift 2 ;;
        --compare) compare=${2:?--compare needs a file}; shift 2 ;;
        --syncws) syncws=$(cd "${2:?--syncws needs a directory}" && pwd); shift 2 ;;
        --scenarios) scenarios=${2//,/ }; shift 2 ;;
        --n-pingpong) n_pingpong=${2:?}; shift 2 ;;
        --n-echo64k) n_echo64k=${2:?}; shift 2 ;;
        --n-pipe1k) n_pipe1k=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "callgrind.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
    esac
done
for s in $scenarios; do
    case $s in pingpong|echo64k|pipe1k) ;; *) echo "callgrind.sh: unknown scenario '$s'" >&2; exit 2 ;; esac
done
[ -f "$syncws/Cargo.toml" ] && grep -q '^name = "syncws"' "$syncws/Cargo.toml" ||
    { echo "callgrind.sh: no syncws crate in $syncws" >&2; exit 2; }
if [ -n "$compare" ] && [ ! -r "$compare" ]; then
    echo "callgrind.sh: cannot read $compare" >&2
    exit 2
fi
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not found" >&2; exit 2; }

# The workload is built as a crate of its own against $syncws, always the
# same way whichever checkout is measured: the release profile with line
# tables (as the workspace's), syncws's own dependency versions (its
# Cargo.lock), no feature unification with the rest of the workspace, and
# no RUSTFLAGS from the environment.
work=$repo/target/callgrind
harness=$work/harness
mkdir -p "$harness" "$work/out"
exec 9>"$work/lock"
flock 9 # one run at a time: they share the harness and the output files
cat >"$harness/Cargo.toml" <<EOF
# Written by benches/callgrind.sh; do not edit.
[package]
name = "callgrind-echo"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "callgrind-echo"
path = "$repo/benches/src/bin/callgrind-echo.rs"

[dependencies]
syncws = { path = "$syncws" }
tungstenite = "0.29"

[profile.release]
debug = 1

[workspace]
EOF
rm -f "$harness/Cargo.lock"
[ ! -f "$syncws/Cargo.lock" ] || cp "$syncws/Cargo.lock" "$harness/Cargo.lock"
echo "callgrind.sh: building the workload against $syncws" >&2
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS \
    cargo build --quiet --release --manifest-path "$harness/Cargo.toml" --target-dir "$work/target"
bin=$work/target/release/callgrind-echo

# Instructions of every thread but the main one (the client), from the
# per-thread files of --separate-threads=yes.
server_instructions() { # out-file prefix
    local f thread total sum=0
    for f in "$1"-*; do
        thread=$(sed -n 's/^thread: *//p' "$f" | head -1)
        total=$(sed -n 's/^\(totals\|summary\): *//p' "$f" | head -1)
        [ -n "$thread" ] && [ -n "$total" ] || { echo "callgrind.sh: cannot read $f" >&2; exit 1; }
        [ "$thread" = 1 ] || sum=$((sum + ${total%% *}))
    done
    echo "$sum"
}

run() { # scenario n -> server instructions
    local out=$work/out/$1-$2 log=$work/out/$1-$2.log
    rm -f "$out" "$out"-*
    if ! valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out" \
        "$bin" "$1" "$2" 2>"$log"; then
        echo "callgrind.sh: $1 $2 failed, see $log" >&2
        tail -5 "$log" >&2
        exit 1
    fi
    server_instructions "$out"
}

describe() { # checkout -> "commit[, with uncommitted changes] (path)"
    local rev
    rev=$(git -C "$1" rev-parse --short HEAD 2>/dev/null) || { echo "$1 (not a git checkout)"; return; }
    [ -z "$(git -C "$1" status --porcelain -- src Cargo.toml Cargo.lock)" ] || rev="$rev, with uncommitted changes"
    echo "$rev ($1)"
}

results=()
for s in $scenarios; do
    n_var=n_$s
    burst_var=burst_$s
    n=${!n_var}
    i1=$(run "$s" "$n")
    i2=$(run "$s" $((2 * n)))
    per=$(awk -v a="$i1" -v b="$i2" -v n="$n" -v m="${!burst_var}" 'BEGIN { printf "%.1f", (b - a) / (n * m) }')
    echo "callgrind.sh: $s: I($n) = $i1, I($((2 * n))) = $i2" >&2
    printf '%-10s %s\n' "$s" "$per"
    results+=("$s $per")
done

if [ -n "$save" ]; then
    {
        echo "# benches/callgrind.sh: server instructions per message, (I(2N) - I(N)) / N"
        echo "# date: $(date -u +%Y-%m-%d)"
        echo "# syncws: $(describe "$syncws")"
        echo "# valgrind: $(valgrind --version)"
        echo "# rustc: $(rustc --version)"
        echo "# N: pingpong $n_pingpong, echo64k $n_echo64k, pipe1k $n_pipe1k (bursts of $burst_pipe1k)"
        echo "# command: benches/callgrind.sh ${args[*]}"
        # The third field, the commit measured, is what .ci/callgrind-check.sh
        # checks out to measure the baseline again; none for a checkout with
        # uncommitted changes, which no one else can check out.
        rev=$(git -C "$syncws" rev-parse --short HEAD 2>/dev/null || true)
        [ -z "$(git -C "$syncws" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] || rev=
        printf '%s\n' "${results[@]}" | awk -v rev="$rev" '{ printf "%-10s %-9s %s\n", $1, $2, rev }'
    } >"$save"
    echo "callgrind.sh: wrote $save" >&2
fi

if [ -n "$compare" ]; then
    base_rustc=$(sed -n 's/^# rustc: //p' "$compare")
    base_vg=$(sed -n 's/^# valgrind: //p' "$compare")
    if [ -n "$base_rustc" ] && [ "$base_rustc" != "$(rustc --version)" ]; then
        echo "callgrind.sh: warning: baseline built with $base_rustc, now $(rustc --version): re-measure the baseline" >&2
    fi
    if [ -n "$base_vg" ] && [ "$base_vg" != "$(valgrind --version)" ]; then
        echo "callgrind.sh: warning: baseline counted by $base_vg, now $(valgrind --version)" >&2
    fi
    echo
    printf '%-10s %12s %12s %8s\n' scenario instr/msg baseline ratio
    printf '%s\n' "${results[@]}" | awk -v limit="$LIMIT" -v base="$compare" '
        BEGIN {
            # The baseline: "scenario value [commit]" lines; "#" starts a comment.
            while ((getline line < base) > 0) {
                sub(/#.*/, "", line)
                n = split(line, f)
                if (n == 2 || n == 3) b[f[1]] = f[2]
            }
        }
        {
            if (!($1 in b)) { printf "%-10s %12s %12s %8s\n", $1, $2, "-", "-"; next }
            r = $2 / b[$1]
            verdict = r > limit ? "  WORSE than " limit : ""
            if (r > limit) bad = 1
            printf "%-10s %12s %12s %8.4f%s\n", $1, $2, b[$1], r, verdict
        }
        END { exit bad }' || { echo "callgrind.sh: more than 3 % worse than $compare" >&2; exit 1; }
fi
