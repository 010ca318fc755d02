#!/usr/bin/env bash
# verify benchmark: latency, registry requests and round trips of `verify --policy` (and `verify --key`) for an
# artifact that is signed and carries two attestations (SLSA provenance + CycloneDX SBOM), against ONE freshly
# started local docker-registry (distribution 2.8, plain http on a free loopback port; it has no referrers API).
# Run by hand, not in CI.
#
#   cargo build --release
#   bench/verify.sh
#
# Environment:
#   BENCH_RUNS=11          verifies per measurement (medians reported)
#   BENCH_DELAY_MS=50      one-way delay the latency proxy adds to every request
#   SEALPACK_BIN=<repo>/target/release/sealpack
#   SEALPACK_TEST_VENV=$HOME/.cache/sealpack/venv  (python for the proxy)
#   BENCH_KEEP=1           keep the work directory
#
# Rows: verify --policy and verify --key of REPO:v1, and verify --policy of REPO@sha256:... (pinned: the resolve
# and the evidence reads can go out together).
# Measured, per command:
#   requests     registry requests of one verify, from the registry's access log (resolve included)
#   wall direct  median wall time on loopback (no added latency)
#   wall +delay  median wall time through a TCP proxy that holds every request BENCH_DELAY_MS before passing it
#                on (responses pass at once): each sequential wave of requests costs one delay, requests sent
#                in parallel (on parallel connections) cost it once together
#   round trips  (wall +delay - wall direct) / delay, rounded: the sequential waves, resolve included; issue 7's
#                bar counts the waves after the tag is resolved (this figure minus 1) and asks for at most 4
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export LC_ALL=C

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${BENCH_RUNS:-11}"
DELAY_MS="${BENCH_DELAY_MS:-50}"
SEALPACK_BIN="${SEALPACK_BIN:-$REPO_DIR/target/release/sealpack}"
VENV="${SEALPACK_TEST_VENV:-$HOME/.cache/sealpack/venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
REGISTRY_BIN=/usr/bin/docker-registry

[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ "$DELAY_MS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_DELAY_MS must be a positive integer"
for t in "$REGISTRY_BIN" /usr/bin/time curl openssl; do
  command -v "$t" >/dev/null 2>&1 || die "$t not found: run scripts/install-test-deps.sh"
done
[ -x "$SEALPACK_BIN" ] || die "no sealpack binary at $SEALPACK_BIN (cargo build --release, or set SEALPACK_BIN)"

WORK="$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/sealpack-verify-bench.XXXXXX")"
REG_LOG="$WORK/registry.log"
REG_PID=""
PROXY_PID=""
HOST=""
cleanup() {
  local rc=$?
  for p in "$PROXY_PID" "$REG_PID"; do
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP proxy that delays every client -> registry chunk by DELAY (order kept per connection); responses pass at once.
start_proxy() {
  local port i
  port="$(free_port)"
  PROXY="127.0.0.1:$port"
  "$PY" - "$port" "${HOST#*:}" "$DELAY_MS" >"$WORK/proxy.log" 2>&1 <<'EOF' &
import asyncio, sys
port, upstream, delay = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000
async def delayed(reader, writer):
    loop, q = asyncio.get_running_loop(), asyncio.Queue()
    async def rx():
        while True:
            data = await reader.read(1 << 16)
            await q.put((loop.time() + delay, data))
            if not data:
                return
    async def tx():
        while True:
            due, data = await q.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()
    await asyncio.gather(rx(), tx())
async def direct(reader, writer):
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.close()
async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(delayed(cr, uw), direct(ur, cw))
    except (ConnectionError, OSError):
        pass
    finally:
        cw.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()
asyncio.run(main())
EOF
  PROXY_PID=$!
  for i in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$PROXY/v2/" || true)" = 200 ] && return 0
    sleep 0.05
  done
  die "latency proxy did not start"
}

start_registry
start_proxy
echo "bench: docker-registry on $HOST, latency proxy (+${DELAY_MS} ms per request) on $PROXY, work dir $WORK" >&2

# ------------------------------------------------------------------------------------------- the artifact
cd "$WORK"
export SEALPACK_CACHE_DIR="$WORK/cache"
SP=("$SEALPACK_BIN" --plain-http -q)
printf 'release 1\n' >app.txt
TARGET="$HOST/team/app:v1"
PINNED="$("${SP[@]}" push app.txt --to "$TARGET")"
export SEALPACK_PASSWORD=bench
"${SP[@]}" keygen --type ecdsa-p256 --out release >/dev/null
"${SP[@]}" keygen --type ed25519 --out ci >/dev/null
[ -f release.key ] && [ -f ci.key ] || die "keygen failed"
"${SP[@]}" sign "$TARGET" --key release.key >/dev/null
"${SP[@]}" attest "$TARGET" --key ci.key --provenance --commit 0123456789abcdef0123456789abcdef01234567 \
  --source-uri git+https://github.com/acme/app@refs/tags/v1.0.0 \
  --builder-id https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main >/dev/null
"${SP[@]}" attest "$TARGET" --key ci.key --sbom >/dev/null
cat >policy.toml <<'EOF'
version = 1

[defaults]
deny_unmatched = true

[[keys]]
id = "release"
path = "release.pub"
roles = ["release"]

[[keys]]
id = "ci"
path = "ci.pub"
roles = ["builder"]

[[rules]]
scope = "*/team/*"
signatures = { threshold = 1, roles = ["release"] }

[[rules.attestations]]
type = "https://slsa.dev/provenance/v1"
signed_by = ["builder"]

[[rules.attestations]]
type = "https://cyclonedx.org/bom"
signed_by = ["builder"]
EOF
echo "bench: $PINNED signed by release, attested (provenance, SBOM) by ci" >&2

# ------------------------------------------------------------------------------------------- measuring
# run_many HOST ARGS...: RUNS verifies of HOST/team/app:v1; prints "median_wall median_cpu"
run_many() {
  local host=$1; shift
  local i t0 t1 walls=() cpus=() u s
  for i in $(seq 1 "$RUNS"); do
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S' -o "$WORK/time.out" "${SP[@]}" verify "$host/team/app$SUFFIX" "$@" >"$WORK/out" 2>&1 \
      || { cat "$WORK/out" >&2; die "verify $* failed"; }
    t1=$EPOCHREALTIME
    read -r u s < <(tail -n 1 "$WORK/time.out")
    walls+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b - a}')")
    cpus+=("$(awk -v a="$u" -v b="$s" 'BEGIN{printf "%.2f", a + b}')")
  done
  printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END{printf "%s ", a[int((NR+1)/2)]}'
  printf '%s\n' "${cpus[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'
}

# count_requests ARGS...: registry requests of one verify, with the list
count_requests() {
  local lines0
  sync_log
  lines0="$(wc -l <"$REG_LOG")"
  "${SP[@]}" verify "$HOST/team/app$SUFFIX" "$@" >/dev/null
  sync_log
  tail -n +"$((lines0 + 1))" "$REG_LOG" | grep -oE '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/[^ ]*' \
    | grep -vF '/bench-sentinel/' | tr -d '"' >"$WORK/reqs.txt" || true
  wc -l <"$WORK/reqs.txt"
}

report() { # LABEL ARGS...
  local label=$1; shift
  local n direct delayed wd cd wp cp trips
  n="$(count_requests "$@")"
  sed 's/^/    /; s/sha256[:-]\([0-9a-f]\{12\}\)[0-9a-f]*/sha256:\1…/g' "$WORK/reqs.txt" >&2
  direct="$(run_many "$HOST" "$@")"
  delayed="$(run_many "$PROXY" "$@")"
  read -r wd cd <<<"$direct"
  read -r wp cp <<<"$delayed"
  trips="$(awk -v a="$wd" -v b="$wp" -v d="$DELAY_MS" 'BEGIN{printf "%d", (b - a) * 1000 / d + 0.5}')"
  printf '%-16s %9s %12.1f %13.1f %12s %12s %10s\n' "$label" "$n" "$(awk -v x="$wd" 'BEGIN{print x*1000}')" \
    "$(awk -v x="$wp" 'BEGIN{print x*1000}')" "$cd" "$trips" "$((trips - 1))"
}

echo >&2
printf '%-16s %9s %12s %13s %12s %12s %10s\n' command requests "wall ms" "wall ms +${DELAY_MS}" "CPU s" "round trips" "after tag"
SUFFIX=":v1"
report "verify --policy" --policy policy.toml
report "verify --key" --key release.pub
SUFFIX="@${PINNED#*@}"
report "--policy @digest" --policy policy.toml
echo "medians of $RUNS runs; round trips = (wall +delay - wall direct) / delay, rounded, resolve included;"
echo "after tag = round trips after the tag is resolved (issue 7's bar: at most 4)."
