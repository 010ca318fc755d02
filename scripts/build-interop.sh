#!/usr/bin/env bash
# Build the test-only cosign interop checker (interop/sigstore-check, built on sigstore-rs) and print the
# path of its binary as the LAST line of stdout. It is NOT part of sealpack's workspace and never a
# dependency of sealpack; the integration tests use it to cross-check signatures with an independent
# implementation.
#
#   bin=$(bash scripts/build-interop.sh | tail -n1)
#
# Target dir: $CARGO_TARGET_DIR if set, else $HOME/.cache/sealpack/interop-target (kept apart from the
# main crate's target/ so the slow first build, ~10 min on 2 cores, is reused across runs).
# Extra arguments are passed to cargo build (e.g. --offline, --locked).
set -euo pipefail

target="${CARGO_TARGET_DIR:-$HOME/.cache/sealpack/interop-target}"
mkdir -p "$target"
# absolute, resolved from the caller's directory (a relative CARGO_TARGET_DIR means relative to it)
export CARGO_TARGET_DIR="$(cd "$target" && pwd)"
cd "$(dirname "$0")/.."
manifest=interop/sigstore-check/Cargo.toml

echo "== building sigstore-check into $CARGO_TARGET_DIR (first build is slow)" >&2
# cargo's own output goes to stderr, so stdout carries only the binary path.
cargo build --release --locked --manifest-path "$manifest" "$@" >&2

bin="$CARGO_TARGET_DIR/release/sigstore-check"
if [ ! -x "$bin" ]; then
  echo "build-interop: $bin not found after build" >&2
  exit 1
fi
echo "$bin"
