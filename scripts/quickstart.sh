#!/usr/bin/env bash
# The main job end to end, with no registry: push a static site to an OCI image layout folder, inspect it, pull
# it back with every digest checked, and compare checksums with the original. Run from anywhere:
#   bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== building sealpack" >&2
cargo build --quiet --bin sealpack
SP="${CARGO_TARGET_DIR:-target}/debug/sealpack"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sealpack-quickstart.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
LAYOUT="oci:$WORK/layout:v1.0.0"
# reproducible: the same site always gives the same digest
export SOURCE_DATE_EPOCH=1700000000

step() { printf '\n== %s\n' "$*" >&2; }

step "push testdata/site to $LAYOUT"
REF=$("$SP" push testdata/site --to "$LAYOUT" --commit 0123456789abcdef0123456789abcdef01234567)
echo "$REF"

step "resolve the tag to its digest"
DIGEST=$("$SP" resolve "$LAYOUT")
echo "$DIGEST"

step "inspect"
"$SP" inspect "$REF"

step "pull by digest into $WORK/out"
"$SP" pull "$REF" -o "$WORK/out"

step "verify before signing: denied (exit 10)"
if "$SP" verify "$REF" --key keys.example/release.pub 2>&1; then echo "unsigned artifact verified?!" >&2; exit 1; fi

step "sign with the demo key (keys.example/, password in its README)"
SEALPACK_PASSWORD=example-only-do-not-use "$SP" sign "$REF" --key keys.example/release.key

step "verify: the gate passes and prints the digest it checked"
"$SP" verify "$REF" --key keys.example/release.pub

step "attest SLSA provenance (from git, or the commit given) and a CycloneDX SBOM of every file"
SEALPACK_PASSWORD=example-only-do-not-use "$SP" attest "$REF" --key keys.example/release.key --provenance \
  --commit 0123456789abcdef0123456789abcdef01234567 --source-uri git+https://example.com/acme/site@refs/tags/v1.0.0
SEALPACK_PASSWORD=example-only-do-not-use "$SP" attest "$REF" --key keys.example/release.key --sbom

step "verify the attestations: the statement must be of that exact type, signed, and about this digest"
"$SP" verify-attestation "$REF" --key keys.example/release.pub --type slsaprovenance --json \
  | grep -E '"(gitCommit|id|uri)"' >&2
"$SP" verify-attestation "$REF" --key keys.example/release.pub --type cyclonedx -q | tail -n 1

step "the gate with a policy (keys.example/policy.toml): signature, provenance rules and SBOM, per rule"
"$SP" verify "$REF" --policy keys.example/policy.toml

step "compare checksums"
(cd testdata/site && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$WORK/want.sha256"
(cd "$WORK/out/site" && sha256sum --quiet -c "$WORK/want.sha256")
echo "all $(wc -l < "$WORK/want.sha256") files identical" >&2

step "done: $REF"
