#!/usr/bin/env bash
# Push/pull benchmark: sealpack against its peers (raw curl = the floor, skopeo, oras-py), in ONE run against
# ONE freshly started local docker-registry (distribution 2.8, plain http on a free loopback port).
# Run by hand, not in CI (a 1 GiB run takes a few minutes and needs ~3x the payload size of free disk).
#
#   scripts/install-test-deps.sh                  # once: docker-registry, skopeo, curl, GNU time, oras-py venv
#   cargo build --release                         # optional: without the binary, sealpack's rows are skipped
#   bench/push-pull.sh
#
# Environment:
#   BENCH_SIZE_MB=1024     payload size in MiB (random bytes)
#   BENCH_RUNS=3           runs; each run pushes every tool to a NEW repository (cold), tools alternate
#                          (the starting tool rotates per run), then warm pushes, then pulls
#   SEALPACK_BIN=<repo>/target/release/sealpack
#   SEALPACK_TEST_VENV=$HOME/.cache/sealpack/venv  (oras-py)
#   BENCH_TMPDIR=${TMPDIR:-/tmp}                  where the payload, registry storage and pulls go
#   BENCH_KEEP=1           keep the work directory (registry log, results.tsv)
#
# Measured per operation: wall time (bash $EPOCHREALTIME around the command), client CPU user+sys and peak RSS
# (GNU /usr/bin/time: they include the client's child processes), the registry process's CPU (from
# /proc/PID/stat), and from the registry's access log the blob-upload requests (PATCH/PUT to
# /blobs/uploads/) and cross-repo mounts it saw. Every push is checked (blob + tag present) and every pull is
# compared byte for byte with the payload, outside the timing.
#
# Peer commands (as in shared notes "How the peers were run"):
#   curl    push: POST /v2/NAME/blobs/uploads/ then curl -T FILE "$LOCATION&digest=sha256:..." (digest
#                 precomputed outside the timing); pull: GET the blob to a file
#   curl+openssl  pull only, a reference for a checked download: curl URL | tee FILE | openssl dgst -sha256
#                 (every byte hashed while written, as sealpack does, with OpenSSL's SHA-NI code; not a target)
#   skopeo  push: copy --preserve-digests oci:LAYOUT:v1 docker://HOST/NAME:v1 from a hand-built OCI layout
#                 holding the file as one uncompressed layer; pull: to an oci: layout. skopeo's blob-info
#                 cache is cleared before each cold push, or it would cross-repo mount from the previous run.
#   oras-py push: OrasClient(insecure=True).push(files=[name], do_chunked=False); pull: .pull(outdir=...)
#   sealpack push: $SEALPACK_BIN --plain-http push FILE --to HOST/bench-sealpack-RUN:v1
#            pull: $SEALPACK_BIN --plain-http pull HOST/bench-sealpack-RUN:v1 -o OUTDIR (OUTDIR: new, empty)
# Warm push = the same push to the same repository again (blob already there): sealpack and skopeo.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export LC_ALL=C

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZE_MB="${BENCH_SIZE_MB:-1024}"
RUNS="${BENCH_RUNS:-3}"
SEALPACK_BIN="${SEALPACK_BIN:-$REPO_DIR/target/release/sealpack}"
VENV="${SEALPACK_TEST_VENV:-$HOME/.cache/sealpack/venv}"
PY="$VENV/bin/python"
REGISTRY_BIN=/usr/bin/docker-registry
HINT="run scripts/install-test-deps.sh"

[[ "$SIZE_MB" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZE_MB must be a positive integer"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
for t in "$REGISTRY_BIN" /usr/bin/time skopeo curl openssl cmp; do
  command -v "$t" >/dev/null 2>&1 || die "$t not found: $HINT"
done
if ! { [ -x "$PY" ] && "$PY" -c 'import oras.client' 2>/dev/null; }; then die "oras-py venv $VENV missing: $HINT"; fi
HAVE_SEALPACK=1
[ -x "$SEALPACK_BIN" ] || HAVE_SEALPACK=0

BASE_TMP="${BENCH_TMPDIR:-${TMPDIR:-/tmp}}"
need_kb=$(( SIZE_MB * 1024 * 3 + 512 * 1024 ))
avail_kb="$(df -Pk "$BASE_TMP" | awk 'NR==2{print $4}')"
[ "$avail_kb" -ge "$need_kb" ] || die "need ~$((need_kb / 1024)) MiB free in $BASE_TMP, have $((avail_kb / 1024)) MiB"

WORK="$(mktemp -d "$BASE_TMP/sealpack-bench.XXXXXX")"
RESULTS="$WORK/results.tsv"
REG_LOG="$WORK/registry.log"
REG_PID=""
HOST=""

skopeo_cache_save

cleanup() {
  local rc=$?
  stop_registry
  skopeo_cache_restore
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    rm -rf "$WORK/src" "$WORK/layout" "$WORK/registry" "$WORK/pull" 2>/dev/null || true
    echo "bench: kept $WORK (results.tsv, registry.log)" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------- payload
mkdir -p "$WORK/src" "$WORK/pull"
FILE_NAME="payload-${SIZE_MB}MiB.bin"
FILE="$WORK/src/$FILE_NAME"
SIZE=$(( SIZE_MB * 1024 * 1024 ))
echo "bench: writing $SIZE_MB MiB of random bytes, hashing (not timed) ..." >&2
head -c "$SIZE" /dev/urandom >"$FILE"
DIGEST="$(openssl dgst -sha256 -r "$FILE" | cut -c1-64)"

# OCI layout for skopeo: the file as one uncompressed layer (hard link), config {}, one manifest tagged v1.
LAYOUT="$WORK/layout"
mkdir -p "$LAYOUT/blobs/sha256"
ln "$FILE" "$LAYOUT/blobs/sha256/$DIGEST" 2>/dev/null || cp "$FILE" "$LAYOUT/blobs/sha256/$DIGEST"
printf '{}' >"$LAYOUT/cfg.tmp"
CFG_DIGEST="$(openssl dgst -sha256 -r "$LAYOUT/cfg.tmp" | cut -c1-64)"
mv "$LAYOUT/cfg.tmp" "$LAYOUT/blobs/sha256/$CFG_DIGEST"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.title":"%s"}}]}' \
  "$CFG_DIGEST" "$DIGEST" "$SIZE" "$FILE_NAME" >"$LAYOUT/man.tmp"
MAN_DIGEST="$(openssl dgst -sha256 -r "$LAYOUT/man.tmp" | cut -c1-64)"
MAN_SIZE="$(stat -c %s "$LAYOUT/man.tmp")"
mv "$LAYOUT/man.tmp" "$LAYOUT/blobs/sha256/$MAN_DIGEST"
printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
  "$MAN_DIGEST" "$MAN_SIZE" >"$LAYOUT/index.json"

# oras-py drivers
cat >"$WORK/oras_push.py" <<'EOF'
import os, sys
import oras.client
host, target, path = sys.argv[1:4]
os.chdir(os.path.dirname(path))  # oras-py wants files below the working directory
oras.client.OrasClient(hostname=host, insecure=True).push(
    files=[os.path.basename(path)], target=target, do_chunked=False, quiet=True)
EOF
cat >"$WORK/oras_pull.py" <<'EOF'
import sys
import oras.client
host, target, outdir = sys.argv[1:4]
oras.client.OrasClient(hostname=host, insecure=True).pull(target=target, outdir=outdir)
EOF

# ------------------------------------------------------------------------------------------- measuring
printf 'tool\top\trun\twall_s\tcpu_s\trss_kib\treg_cpu_s\tstatus\tuploads\tmounts\tnote\n' >"$RESULTS"

# measure TOOL OP RUN CMD...: time CMD; the row is kept in ROW (written by emit_row, after the checks
# have added to NOTE). Sets LAST_OK=1/0.
measure() {
  local tool=$1 op=$2 run=$3; shift 3
  local tf="$WORK/time.out" err="$WORK/cmd.err" rc=0 t0 t1 r0 r1 lines0 u s m new uploads mounts wall
  sync_log || true
  lines0="$(wc -l <"$REG_LOG")"
  r0="$(reg_cpu_ticks)"
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S %M' -o "$tf" "$@" >"$err" 2>&1 </dev/null || rc=$?
  t1=$EPOCHREALTIME
  r1="$(reg_cpu_ticks)"
  sync_log || true
  read -r u s m < <(tail -n 1 "$tf")
  new="$(tail -n +"$((lines0 + 1))" "$REG_LOG")"
  uploads="$(grep -cE '"(PATCH|PUT) /v2/[^ ]*/blobs/uploads/' <<<"$new" || true)"
  mounts="$(grep -cE '"POST /v2/[^ ]*/blobs/uploads/\?[^ ]*mount=' <<<"$new" || true)"
  wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')"
  LAST_OK=1; NOTE=""
  local status=ok
  if [ "$rc" -ne 0 ]; then
    status=fail; LAST_OK=0
    echo "bench: $tool $op (run $run) FAILED (exit $rc):" >&2
    tail -n 5 "$err" | sed 's/^/    /' >&2
  fi
  ROW="$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$tool" "$op" "$run" "$wall" \
    "$(awk -v a="$u" -v b="$s" 'BEGIN{printf "%.2f", a + b}')" "$m" \
    "$(awk -v a="$r0" -v b="$r1" -v t="$CLK_TCK" 'BEGIN{printf "%.2f", (b - a) / t}')" \
    "$status" "$uploads" "$mounts")"
  printf 'bench: run %s %-8s %-9s %8.3f s  %s\n' "$run" "$tool" "$op" "$wall" "$status" >&2
}

add_note() { NOTE="${NOTE:+$NOTE; }$1"; echo "bench:   NOTE: $1" >&2; }
emit_row() { printf '%s\t%s\n' "$ROW" "$NOTE" >>"$RESULTS"; }

OCI_ACCEPT='application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.index.v1+json'
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$@" || true; }

# check_push REPO WANT_MANIFEST: the payload blob (and tag v1) must be in REPO; then write the row.
check_push() {
  local repo=$1 want_manifest=$2
  if [ "$LAST_OK" = 1 ]; then
    [ "$(http_code -I "http://$HOST/v2/$repo/blobs/sha256:$DIGEST")" = 200 ] || add_note "payload blob not in $repo"
    if [ "$want_manifest" = 1 ] && [ "$(http_code -I -H "Accept: $OCI_ACCEPT" "http://$HOST/v2/$repo/manifests/v1")" != 200 ]; then
      add_note "no manifest $repo:v1"
    fi
  fi
  emit_row
}

# check_pull DIR: some file under DIR must equal the payload.
check_pull() {
  local dir=$1 f found=0
  if [ "$LAST_OK" = 1 ]; then
    while IFS= read -r -d '' f; do
      if cmp -s "$f" "$FILE"; then found=1; break; fi
    done < <(find "$dir" -type f -size "${SIZE}c" -print0 2>/dev/null)
    [ "$found" = 1 ] || add_note "MISMATCH: no pulled file equals the payload"
  fi
  emit_row
  rm -rf "$dir"
}

# Raw curl push: both requests are inside the timing; the digest was computed before.
# shellcheck disable=SC2016
CURL_PUSH='set -euo pipefail
loc=$(curl -sS -f -X POST -D - -o /dev/null "http://$1/v2/$2/blobs/uploads/" | tr -d "\r" |
      awk -F": " "tolower(\$1)==\"location\" {print \$2}")
case "$loc" in /*) loc="http://$1$loc";; esac
case "$loc" in *\?*) sep="&";; *) sep="?";; esac
curl -sS -f -o /dev/null -T "$3" "$loc${sep}digest=sha256:$4"'

do_push() { # TOOL RUN KIND(cold|warm)
  local tool=$1 run=$2 kind=$3 repo="bench-$1-$2"
  case "$tool" in
    curl)
      measure curl "push-$kind" "$run" bash -c "$CURL_PUSH" _ "$HOST" "$repo" "$FILE" "$DIGEST"
      check_push "$repo" 0 ;;
    skopeo)
      [ "$kind" = cold ] && rm -f "$SKOPEO_CACHE"
      measure skopeo "push-$kind" "$run" skopeo --insecure-policy copy -q --preserve-digests --dest-tls-verify=false \
        "oci:$LAYOUT:v1" "docker://$HOST/$repo:v1"
      check_push "$repo" 1 ;;
    oras-py)
      measure oras-py "push-$kind" "$run" "$PY" "$WORK/oras_push.py" "$HOST" "$HOST/$repo:v1" "$FILE"
      check_push "$repo" 1 ;;
    sealpack)
      # cold = no help from sealpack's caches (like the skopeo cache reset): a fresh cache folder, so the file is
      # hashed and no cross-repository mount is known; warm pushes keep the cache of the cold push
      if [ "$kind" = cold ]; then rm -rf "$WORK/sealpack-cache-$run"; fi
      export SEALPACK_CACHE_DIR="$WORK/sealpack-cache-$run"
      measure sealpack "push-$kind" "$run" "$SEALPACK_BIN" --plain-http push "$FILE" --to "$HOST/$repo:v1"
      check_push "$repo" 1 ;;
  esac
}

do_pull() { # TOOL RUN
  local tool=$1 run=$2 repo="bench-$1-$2" out="$WORK/pull/$1-$2"
  case "$tool" in
    curl)
      mkdir -p "$out"
      measure curl pull "$run" curl -sS -f -o "$out/$FILE_NAME" "http://$HOST/v2/$repo/blobs/sha256:$DIGEST"
      check_pull "$out"
      # the same GET, checked as sealpack checks: every byte through SHA-256 while it is written (reference only)
      mkdir -p "$out"
      measure curl+openssl pull "$run" bash -c 'set -o pipefail; curl -sS -f "$1" | tee "$2" | openssl dgst -sha256 >/dev/null' _ \
        "http://$HOST/v2/$repo/blobs/sha256:$DIGEST" "$out/$FILE_NAME" ;;
    skopeo)
      measure skopeo pull "$run" skopeo --insecure-policy copy -q --preserve-digests --dest-oci-accept-uncompressed-layers \
        --src-tls-verify=false "docker://$HOST/$repo:v1" "oci:$out:v1" ;;
    oras-py)
      mkdir -p "$out"
      measure oras-py pull "$run" "$PY" "$WORK/oras_pull.py" "$HOST" "$HOST/$repo:v1" "$out" ;;
    sealpack)
      mkdir -p "$out"
      measure sealpack pull "$run" "$SEALPACK_BIN" --plain-http pull "$HOST/$repo:v1" -o "$out" ;;
  esac
  check_pull "$out"
}

# ------------------------------------------------------------------------------------------- run
start_registry
REG_VERSION="$("$REGISTRY_BIN" --version 2>&1 | awk '{print $NF}')"
echo "bench: docker-registry $REG_VERSION on $HOST (pid $REG_PID), work dir $WORK" >&2

TOOLS=(curl skopeo oras-py)
if [ "$HAVE_SEALPACK" = 1 ]; then
  TOOLS+=(sealpack)
else
  echo "bench: NOTE: $SEALPACK_BIN not found (build with cargo build --release, or set SEALPACK_BIN): sealpack rows skipped" >&2
fi

for run in $(seq 1 "$RUNS"); do
  n=${#TOOLS[@]}
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${TOOLS[$(( (i + run - 1) % n ))]}"); done
  echo "bench: run $run/$RUNS, order: ${order[*]}" >&2
  for t in "${order[@]}"; do do_push "$t" "$run" cold; done
  for t in "${order[@]}"; do
    case "$t" in skopeo|sealpack) do_push "$t" "$run" warm ;; esac
  done
  for t in "${order[@]}"; do do_pull "$t" "$run"; done
done

# ------------------------------------------------------------------------------------------- report
"$PY" - "$RESULTS" "$SIZE_MB" "$RUNS" "$HAVE_SEALPACK" "$SEALPACK_BIN" "$REG_VERSION" "$(nproc)" <<'EOF'
import csv, statistics, sys
path, size_mb, runs, have_sp, sp_bin, reg_version, ncpu = sys.argv[1:8]
size_mb, runs = int(size_mb), int(runs)
rows = list(csv.DictReader(open(path), delimiter="\t"))
mb = size_mb * 1024 * 1024 / 1e6

def ok(r):
    return r["status"] == "ok" and "MISMATCH" not in r["note"] and "not in" not in r["note"]

def med(xs):
    return statistics.median(xs) if xs else None

curl = {(r["op"].split("-")[0], r["run"]): float(r["wall_s"]) for r in rows if r["tool"] == "curl" and ok(r)}
ops = [("push-cold", "push"), ("push-warm", "push"), ("pull", "pull")]
tools = ["curl", "curl+openssl", "skopeo", "oras-py", "sealpack"]
print()
print(f"sealpack push/pull bench: {size_mb} MiB random payload, {runs} run(s), docker-registry {reg_version} "
      f"(plain http, loopback), {ncpu} cores; medians")
hdr = f"{'operation':<22}{'ok/n':>6}{'wall s':>9}{'MB/s':>8}{'client CPU s':>14}{'peak RSS MiB':>14}{'registry CPU s':>16}{'x curl':>8}  notes"
print(hdr)
print("-" * len(hdr))
summary = {}
for op, kind in ops:
    for tool in tools:
        rs = [r for r in rows if r["tool"] == tool and r["op"] == op]
        if not rs:
            continue
        good = [r for r in rs if ok(r)]
        wall = med([float(r["wall_s"]) for r in good])
        cpu = med([float(r["cpu_s"]) for r in good])
        rss = max([int(r["rss_kib"]) / 1024 for r in good], default=None)
        rss_med = med([int(r["rss_kib"]) / 1024 for r in good])
        reg = med([float(r["reg_cpu_s"]) for r in good])
        ratios = [float(r["wall_s"]) / curl[(kind, r["run"])] for r in good if (kind, r["run"]) in curl]
        ratio = med(ratios)
        notes = sorted({n for r in rs for n in r["note"].split("; ") if n})
        up = sorted({int(r["uploads"]) for r in rs}); mo = sorted({int(r["mounts"]) for r in rs})
        if kind == "push":
            notes.insert(0, f"blob-upload reqs {'/'.join(map(str, up))}" + (f", mounts {'/'.join(map(str, mo))}" if any(mo) else ""))
        if len(good) < len(rs):
            notes.append(f"{len(rs) - len(good)} failed")
        label = f"{op.replace('-', ' ')} {tool}"
        f = lambda v, fmt: (fmt % v) if v is not None else "-"
        mbps = (mb / wall) if (wall and op != "push-warm") else None
        print(f"{label:<22}{len(good):>3}/{len(rs):<2}{f(wall, '%.3f'):>9}{f(mbps, '%.0f'):>8}{f(cpu, '%.2f'):>14}"
              f"{f(rss_med, '%.0f'):>14}{f(reg, '%.2f'):>16}{f(ratio, '%.2f'):>8}  {'; '.join(notes)}")
        summary[(tool, op)] = dict(ratio=ratio, rss=rss, n=len(good), total=len(rs))
print("x curl = median over runs of (tool wall / curl wall in the same run); push rows vs curl cold push, pull vs curl pull.")
print("MB/s = 10^6 bytes per second of wall time; peak RSS includes child processes (GNU time).")
print("blob-upload reqs = PATCH/PUT requests to /blobs/uploads/ per push, all blobs (config too), as the registry logged them.")
print()
print("targets:")
if have_sp != "1":
    print(f"  SKIPPED: no sealpack binary at {sp_bin} (cargo build --release, or set SEALPACK_BIN)")
else:
    def target(name, val, limit, unit=""):
        if val is None:
            print(f"  FAIL  {name}: no successful measurement (limit {limit}{unit})")
            return False
        good = val <= limit if unit != " MiB" else val < limit
        print(f"  {'PASS' if good else 'FAIL'}  {name}: {val:.2f}{unit} ({'<' if unit == ' MiB' else '<='} {limit}{unit})")
        return good
    p = summary.get(("sealpack", "push-cold"), {})
    q = summary.get(("sealpack", "pull"), {})
    rss = max([s["rss"] for (t, _), s in summary.items() if t == "sealpack" and s["rss"] is not None], default=None)
    target("sealpack push, x curl", p.get("ratio"), 1.15, "x")
    target("sealpack pull, x curl", q.get("ratio"), 1.3, "x")
    # what the CPU work alone allows on this machine: the client's and the registry's CPU seconds spread
    # perfectly over every core, as a ratio to curl's wall time in the same run (medians over runs)
    floors = []
    for r in rows:
        if r["tool"] == "sealpack" and r["op"] == "pull" and ok(r) and ("pull", r["run"]) in curl:
            floors.append((float(r["cpu_s"]) + float(r["reg_cpu_s"])) / int(ncpu) / curl[("pull", r["run"])])
    if floors:
        print(f"  note  sealpack pull CPU floor: (client + registry CPU) / {ncpu} cores = {med(floors):.2f}x curl "
              "(no schedule of this work on these cores can be faster)")
    target("sealpack peak RSS (max over its push/warm/pull)", rss, 64, " MiB")
EOF
