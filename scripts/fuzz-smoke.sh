#!/usr/bin/env bash
# Runs every fuzz target for a short while (default 20 s each) on the seed corpus: a smoke test for occasional
# use after changing a parser, not a substitute for the long runs in fuzz/README.md. Not run in CI.
#
#   scripts/fuzz-smoke.sh [SECONDS]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Exits non-zero on the first target that
# crashes; the input is left in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_PER_TARGET=${1:-20}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/fuzz

./seed.sh >/dev/null
cargo +nightly fuzz build --sanitizer none --debug-assertions --target-dir "$TARGET_DIR"
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
for target in $(cargo +nightly fuzz list); do
    echo "== $target (${SECONDS_PER_TARGET}s)"
    cargo +nightly fuzz run --sanitizer none --debug-assertions --target-dir "$TARGET_DIR" "$target" \
        "corpus/$target" -- -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -max_len=262144 \
        -timeout=10 -jobs=1 -print_final_stats=1 2>&1 | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|==[0-9]+==|SUMMARY|thread .* panicked)' || true
    if [ -d "artifacts/$target" ] && [ -n "$(find "artifacts/$target" -type f -newer "$marker")" ]; then
        echo "!! $target: see fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "all targets ran ${SECONDS_PER_TARGET}s without a crash"
