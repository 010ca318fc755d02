#!/usr/bin/env bash
# Regenerates the Markdown CLI reference in docs/cli/ from the clap definitions. tests/cli_docs.rs fails when
# docs/cli/ differs from what the binary generates, so run this after changing a command or flag.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin sealpack
rm -rf docs/cli
"${CARGO_TARGET_DIR:-target}/debug/sealpack" man --format markdown --out docs/cli
echo "docs/cli regenerated ($(ls docs/cli | wc -l) files)" >&2
