#!/usr/bin/env bash
# Every test, on a fresh Debian machine with only Rust: installs what the tests need (docker-registry, skopeo,
# umoci, a Python venv with oras-py ...), checks formatting and lints, then runs the whole suite. Each
# integration test starts its own real registry on a free loopback port and stops it afterwards.
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies" >&2
bash scripts/install-test-deps.sh

echo "== building the sigstore-rs interop checker (test-only, cached after the first build)" >&2
SEALPACK_SIGSTORE_CHECK="$(CARGO_TARGET_DIR="${SEALPACK_INTEROP_TARGET:-$HOME/.cache/sealpack/interop-target}" bash scripts/build-interop.sh | tail -n 1)"
export SEALPACK_SIGSTORE_CHECK

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo clippy" >&2
cargo clippy --all-targets --quiet -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  echo "== cargo nextest run" >&2
  cargo nextest run --no-fail-fast --profile ci
else
  echo "== cargo test (cargo-nextest not installed)" >&2
  cargo test --no-fail-fast
fi
