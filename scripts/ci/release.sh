#!/usr/bin/env bash
# The CI side of a release: push -> sign -> attest SLSA provenance and an SBOM. docs/CI.md's GitHub Actions and
# GitLab CI jobs run these same commands; tests/ci_examples.rs runs this script under a simulated GitHub Actions
# and GitLab CI environment against a real registry, then deploys with scripts/ci/deploy.sh.
#
# Environment:
#   ARTIFACT           the file or folder to push (default: dist)
#   SEALPACK_REF       where: REGISTRY/REPO:TAG (a release tag; tags never move)
#   SEALPACK_KEY_FILE  the release key (cosign's encrypted PEM), with SEALPACK_PASSWORD its password
#   SEALPACK           the sealpack binary (default: sealpack on PATH)
#   SEALPACK_FLAGS     extra global flags (e.g. --plain-http for a local test registry)
# Prints the digest-pinned reference on stdout (for the deploy job).
set -euo pipefail
SP=${SEALPACK:-sealpack}
read -r -a FLAGS <<< "${SEALPACK_FLAGS:-}"
: "${SEALPACK_REF:?set SEALPACK_REF to REGISTRY/REPO:TAG}" "${SEALPACK_KEY_FILE:?set SEALPACK_KEY_FILE}"
# the commit the CI checked out (the work tree's HEAD otherwise)
COMMIT=${GITHUB_SHA:-${CI_COMMIT_SHA:-}}
PINNED=$("$SP" "${FLAGS[@]}" -q push "${ARTIFACT:-dist}" --to "$SEALPACK_REF" ${COMMIT:+--commit "$COMMIT"})
"$SP" "${FLAGS[@]}" -q sign "$PINNED" --key "$SEALPACK_KEY_FILE" >/dev/null
"$SP" "${FLAGS[@]}" -q attest "$PINNED" --key "$SEALPACK_KEY_FILE" --provenance >/dev/null
"$SP" "${FLAGS[@]}" -q attest "$PINNED" --key "$SEALPACK_KEY_FILE" --sbom >/dev/null
echo "$PINNED"
