#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for DURATION seconds each (default 30).
#
#   bash .ci/fuzz.sh [DURATION]
#
# Installs cargo-fuzz into target/tools inside the checkout if it is missing
# (nothing is cached outside the checkout). The only toolchain is stable
# Rust, so RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly flags
# (-Zsanitizer=address among them). FUZZ_SANITIZER=none runs without ASan.
# Checks fmt and clippy of fuzz/ first (the root's checks do not cover it),
# and runs its unit tests: the inputs fuzzing found, kept as regressions.
# Exits non-zero if any target finds a crash, leak, out-of-memory or
# timeout, and prints the artifact that reproduces it.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-30}"
SANITIZER="${FUZZ_SANITIZER:-address}"
TOOLS="$PWD/target/tools"
export PATH="$TOOLS/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz into $TOOLS ($(date +%T))"
  cargo install cargo-fuzz --locked --root "$TOOLS"
fi

echo "== fmt and clippy of fuzz/ (its own workspace, outside the root's) ($(date +%T))"
(cd fuzz && cargo fmt --check && cargo clippy --all-targets -- -D warnings)
# Inputs fuzzing once found, kept as the harnesses' unit tests.
echo "== fuzz/ regression inputs ($(date +%T))"
(cd fuzz && cargo test --lib)

bash fuzz/seeds.sh
echo "== building fuzz targets, sanitizer $SANITIZER ($(date +%T))"
(cd fuzz && cargo fuzz build --sanitizer "$SANITIZER")

failed=()
for target in $(cd fuzz && cargo fuzz list); do
  echo "== fuzzing $target for ${DURATION}s ($(date +%T))"
  mkdir -p "fuzz/artifacts/$target"
  marker="$(mktemp)"
  if ! (cd fuzz && cargo fuzz run --sanitizer "$SANITIZER" "$target" -- \
    -max_total_time="$DURATION" -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=5 -print_final_stats=1); then
    failed+=("$target")
    echo "!! $target failed; artifacts (reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $target ARTIFACT):"
    find "fuzz/artifacts/$target" -type f -newer "$marker" -printf '   %p\n'
  fi
  rm -f "$marker"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all targets ran ${DURATION}s each with no finding"
