#!/usr/bin/env bash
# The main job end to end, with no registry: push a static site to an OCI image layout folder, inspect it, pull
# it back with every digest checked, sign, attest provenance and an SBOM, pass the policy gate, deploy to a
# staging folder, promote the same digest to production, deploy a second version, and roll back. Run from anywhere:
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

PW=example-only-do-not-use
POLICY=keys.example/policy.toml
step "deploy $REF to staging ($WORK/staging): gate -> fetch by digest -> releases/<digest> -> switch current"
"$SP" deploy "$REF" --env staging --target "$WORK/staging" --policy "$POLICY" --health-cmd 'test -f site/index.html'
echo "staging/current -> $(readlink "$WORK/staging/current")" >&2

step "promote what staging runs to production: same digest, re-verified, signed promotion statement, deployed"
SEALPACK_PASSWORD=$PW "$SP" promote "oci:$WORK/layout" --from staging --to production --from-target "$WORK/staging" \
  --target "$WORK/production" --policy "$POLICY" --sign-key keys.example/release.key
[ "$(readlink "$WORK/production/current")" = "$(readlink "$WORK/staging/current")" ]
echo "production/current -> $(readlink "$WORK/production/current") (identical)" >&2

step "build, push, sign and attest a second version, v1.1.0"
cp -r testdata/site "$WORK/site"
echo '<p>v1.1.0</p>' >> "$WORK/site/index.html"
COMMIT2=89abcdef0123456789abcdef0123456789abcdef
REF2=$("$SP" push "$WORK/site" --to "oci:$WORK/layout:v1.1.0" --commit $COMMIT2)
echo "$REF2"
SEALPACK_PASSWORD=$PW "$SP" sign "$REF2" --key keys.example/release.key -q
SEALPACK_PASSWORD=$PW "$SP" attest "$REF2" --key keys.example/release.key --provenance -q \
  --commit $COMMIT2 --source-uri git+https://example.com/acme/site@refs/tags/v1.1.0
SEALPACK_PASSWORD=$PW "$SP" attest "$REF2" --key keys.example/release.key --sbom -q

step "deploy v1.1.0 to staging"
"$SP" deploy "$REF2" --env staging --target "$WORK/staging" --policy "$POLICY" --health-cmd 'grep -q v1.1.0 site/index.html'

step "roll staging back to the last known good release (re-verified first)"
"$SP" rollback --env staging --target "$WORK/staging" --policy "$POLICY"
[ "$(readlink "$WORK/staging/current")" = "releases/${DIGEST#sha256:}" ]

step "history: what ran where, when, from which commit"
"$SP" history --target "$WORK/staging"
"$SP" history --target "$WORK/production"

step "done: $REF"
