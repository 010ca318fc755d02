#!/usr/bin/env bash
# The host side of a release: the gate, then deploy (SPEC §7). Run it on the host that serves TARGET/current.
#
# Environment:
#   REF          the digest-pinned reference the release job printed (or REPO:TAG, resolved once)
#   DEPLOY_ENV   staging, production, ...
#   TARGET       the target folder (serve TARGET/current)
#   POLICY       the policy file (docs/POLICY.md)
#   HEALTH_CMD   optional: run in the new release; failure switches back
#   SEALPACK, SEALPACK_FLAGS as in release.sh
set -euo pipefail
SP=${SEALPACK:-sealpack}
read -r -a FLAGS <<< "${SEALPACK_FLAGS:-}"
: "${REF:?}" "${DEPLOY_ENV:?}" "${TARGET:?}" "${POLICY:?}"
"$SP" "${FLAGS[@]}" verify "$REF" --policy "$POLICY" >/dev/null
exec "$SP" "${FLAGS[@]}" deploy "$REF" --env "$DEPLOY_ENV" --target "$TARGET" --policy "$POLICY" \
  ${HEALTH_CMD:+--health-cmd "$HEALTH_CMD"}
