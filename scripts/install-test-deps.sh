#!/usr/bin/env bash
# Install what sealpack's real-peer tests and the benchmark need, on Debian 12 where only Rust is present.
#
#   scripts/install-test-deps.sh          # idempotent; ~1 s when everything is already there
#
# - Debian packages: docker-registry (distribution 2.8), skopeo, umoci, apache2-utils (htpasswd), openssl,
#   curl, time (GNU /usr/bin/time), jq. `apt-get update` runs only when one of them is missing.
#   The docker-registry package's own service/config (/etc/docker/registry/config.yml) is never used or
#   started: tests start their own registry per test (tests/common/registry.rs, bench/push-pull.sh).
# - A Python venv at ${SEALPACK_TEST_VENV:-$HOME/.cache/sealpack/venv} with pinned oras-py,
#   securesystemslib, cryptography, pynacl, jsonschema with its format checkers (and their dependencies, pinned
#   below).
#
# Prints one line per tool with its version at the end; quiet otherwise (the log of a failed step is shown).
set -euo pipefail

APT_PACKAGES=(docker-registry skopeo umoci apache2-utils openssl curl time jq)
VENV="${SEALPACK_TEST_VENV:-$HOME/.cache/sealpack/venv}"

# Top-level pins (latest on PyPI when written: oras 0.2.43 is the newest 0.2.x).
PY_REQUIREMENTS=(
  "oras==0.2.43"
  "securesystemslib==1.6.0"
  "cryptography==50.0.2"
  "pynacl==1.6.2"
  # JSON Schema validation of the SBOMs sealpack writes (tests/sbom_schema.rs), with the format checkers
  # jsonschema needs for bom-1.6's `date-time`, `iri-reference` and `uri` (its `format-nongpl` extra).
  "jsonschema==4.26.0"
  "referencing==0.37.0"
  "rfc3339-validator==0.1.4"
  "rfc3986-validator==0.1.1"
  "rfc3987-syntax==1.1.0"
)
# Transitive pins, so that a new requests/urllib3/jsonschema release cannot change the tests' peers.
PY_CONSTRAINTS='
attrs==26.1.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
idna==3.20
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
lark==1.3.1
pycparser==3.12
referencing==0.37.0
requests==2.34.2
rpds-py==2026.9.1
six==1.17.0
typing_extensions==4.16.0
urllib3==2.8.0
'

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
# run_quiet DESCRIPTION CMD...: run CMD with its output in $LOG; on failure print the log and exit.
run_quiet() {
  local what="$1"; shift
  if ! "$@" >"$LOG" 2>&1; then
    echo "install-test-deps: FAILED: $what" >&2
    cat "$LOG" >&2
    exit 1
  fi
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ---------------------------------------------------------------- Debian packages
missing=()
for p in "${APT_PACKAGES[@]}"; do
  st="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
  [ "$st" = "installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  run_quiet "apt-get update" as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # --no-install-recommends: the registry needs nothing more; no service is started (no systemd here, and
  # policy-rc.d/invoke-rc.d do nothing without it).
  run_quiet "apt-get install ${missing[*]}" as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# If the package's init script did start a registry somewhere (sysvinit machines), it listens on :5000 with
# the package config; our tests never use it, pick free ports, and so do not depend on it either way.

# ---------------------------------------------------------------- Python venv
want_stamp="$(printf '%s\n' "${PY_REQUIREMENTS[@]}" "$PY_CONSTRAINTS" | sha256sum | cut -c1-64)"
stamp_file="$VENV/.sealpack-requirements.sha256"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp_file" 2>/dev/null || true)" != "$want_stamp" ] \
   || ! "$VENV/bin/python" -c 'import oras, securesystemslib, cryptography, nacl, jsonschema, referencing, rfc3339_validator, rfc3986_validator, rfc3987_syntax' >/dev/null 2>&1; then
  py=""
  for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
      py="$(command -v "$cand")"; break
    fi
  done
  [ -n "$py" ] || { echo "install-test-deps: no python3 >= 3.9 found" >&2; exit 1; }
  if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    if ! "$py" -m venv "$VENV" >"$LOG" 2>&1; then
      # Debian's python3 needs python3-venv for ensurepip.
      rm -rf "$VENV"
      run_quiet "apt-get install python3-venv" as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends python3-venv
      py=/usr/bin/python3
      run_quiet "python3 -m venv $VENV" "$py" -m venv "$VENV"
    fi
  fi
  constraints="$(mktemp)"
  printf '%s\n' "$PY_CONSTRAINTS" >"$constraints"
  run_quiet "pip install ${PY_REQUIREMENTS[*]}" env PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$VENV/bin/python" -m pip install -q -c "$constraints" "${PY_REQUIREMENTS[@]}"
  rm -f "$constraints"
  echo "$want_stamp" >"$stamp_file"
fi

# ---------------------------------------------------------------- versions
dpkg_ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
echo "docker-registry $(/usr/bin/docker-registry --version 2>&1 | awk '{print $NF}') (/usr/bin/docker-registry)"
echo "skopeo $(skopeo --version | awk '{print $NF}')"
echo "umoci $(umoci --version | awk '{print $NF}')"
echo "htpasswd (apache2-utils) $(dpkg_ver apache2-utils)"
echo "openssl $(openssl version | awk '{print $2}')"
echo "curl $(curl --version | awk 'NR==1{print $2}')"
echo "time (GNU /usr/bin/time) $(dpkg_ver time)"
echo "jq $(jq --version | sed 's/^jq-//')"
"$VENV/bin/python" - "$VENV" <<'EOF'
import sys, importlib.metadata as md
print(f"python {sys.version.split()[0]} (venv {sys.argv[1]})")
for d in ("oras", "securesystemslib", "cryptography", "pynacl", "jsonschema", "rfc3339-validator", "rfc3986-validator",
          "rfc3987-syntax"):
    print(f"{d} {md.version(d)}")
EOF
