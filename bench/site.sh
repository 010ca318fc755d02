#!/usr/bin/env bash
# Static-site benchmark: a generated 10,000-file folder pushed (and pulled) by sealpack and its peers in ONE run
# against ONE freshly started local docker-registry (distribution 2.8, plain http on a free loopback port).
# Run by hand, not in CI.
#
#   scripts/install-test-deps.sh                  # once: docker-registry, skopeo, curl, GNU time, oras-py venv
#   cargo build --release
#   bench/site.sh
#
# Environment:
#   BENCH_RUNS=3           runs; each run pushes every tool to a NEW repository (cold), tools alternate
#                          (the starting tool rotates per run), then sealpack's warm push, then pulls
#   BENCH_FILES=10000      files in the generated site
#   SEALPACK_BIN=<repo>/target/release/sealpack
#   SEALPACK_TEST_VENV=$HOME/.cache/sealpack/venv  (oras-py)
#   BENCH_TMPDIR=${TMPDIR:-/tmp}
#   BENCH_KEEP=1           keep the work directory (registry log, results.tsv, the site)
#
# The site (deterministic, seeded): nested folders (20 sections x 10 subfolders, a few levels deeper), files of
# 200 B - 20 KiB spread log-uniformly, 70% markup/text (html, css, js, json) and 30% incompressible (png, woff2),
# plus 5 larger files (1-4 MiB: a video, a pdf, a search index).
#
# Rows (the push of a folder includes packing it: that is the work a user waits for):
#   tar -czf    GNU tar + gzip -6 of the folder to a local file: a local floor for packing, no upload
#   skopeo      cannot pack a folder (it copies images). Its row uploads a layer packed by `tar -czf` beforehand
#               (not timed), from an OCI layout: the upload part alone, for reference
#   oras-py     OrasClient(insecure=True).push(files=[site]): oras-py tars and gzips the folder (level 9) to a
#               temp file and uploads it; pull: .pull(outdir=...) unpacks it
#   sealpack    $SEALPACK_BIN --plain-http push site --to HOST/REPO:v1; cold = fresh SEALPACK_CACHE_DIR and a new
#               repository; warm = the same push again (the layer is present: HEAD only, but the folder is
#               packed again to learn its digest); pull: sealpack pull -o OUTDIR (unpacks with every guard)
# Every push is checked (manifest present), every pull compared with the site (diff -r), outside the timing.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export LC_ALL=C

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${BENCH_RUNS:-3}"
NFILES="${BENCH_FILES:-10000}"
SEALPACK_BIN="${SEALPACK_BIN:-$REPO_DIR/target/release/sealpack}"
VENV="${SEALPACK_TEST_VENV:-$HOME/.cache/sealpack/venv}"
PY="$VENV/bin/python"
REGISTRY_BIN=/usr/bin/docker-registry
HINT="run scripts/install-test-deps.sh"

[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ "$NFILES" =~ ^[1-9][0-9]*$ ]] || die "BENCH_FILES must be a positive integer"
for t in "$REGISTRY_BIN" /usr/bin/time skopeo curl openssl tar gzip diff; do
  command -v "$t" >/dev/null 2>&1 || die "$t not found: $HINT"
done
if ! { [ -x "$PY" ] && "$PY" -c 'import oras.client' 2>/dev/null; }; then die "oras-py venv $VENV missing: $HINT"; fi
[ -x "$SEALPACK_BIN" ] || die "no sealpack binary at $SEALPACK_BIN (cargo build --release, or set SEALPACK_BIN)"

BASE_TMP="${BENCH_TMPDIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "$BASE_TMP/sealpack-site-bench.XXXXXX")"
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
    rm -rf "$WORK/registry" "$WORK/pull" "$WORK/layout" 2>/dev/null || true
    echo "bench: kept $WORK (results.tsv, registry.log, src/site)" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------- the site
mkdir -p "$WORK/src" "$WORK/pull"
SITE="$WORK/src/site"
echo "bench: generating a $NFILES-file site ..." >&2
"$PY" - "$SITE" "$NFILES" <<'EOF'
import math, os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(20261127)
words = ["<div>", 'class="card"', "lorem", "ipsum", "</div>", "\n", "<p>", "dolor", "sit", "amet", "</p>",
         'href="/docs/', 'index.html"', "{", "}", "color:", "#fff;", "function", "return", "const", "=>"]
text_ext = ["html", "html", "html", "css", "js", "json", "svg", "txt"]
bin_ext = ["png", "jpg", "woff2", "webp"]
def size():  # log-uniform in [200 B, 20 KiB]
    return int(math.exp(rnd.uniform(math.log(200), math.log(20 * 1024))))
def text(k):
    parts, total = [], 0
    while total < k:
        w = rnd.choice(words) if rnd.random() > 0.02 else str(rnd.getrandbits(40))
        parts.append(w); total += len(w) + 1
    return (" ".join(parts))[:k].encode()
dirs = []
for s in range(20):
    for t in range(10):
        d = os.path.join(root, f"section-{s:02d}", f"topic-{t}")
        if t % 3 == 0:
            d = os.path.join(d, "assets", "img")
        dirs.append(d)
for d in dirs:
    os.makedirs(d, exist_ok=True)
for i in range(n):
    d = dirs[i % len(dirs)]
    if rnd.random() < 0.7:
        name, data = f"page-{i:05d}.{rnd.choice(text_ext)}", text(size())
    else:
        name, data = f"asset-{i:05d}.{rnd.choice(bin_ext)}", rnd.randbytes(size())
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
big = os.path.join(root, "static")
os.makedirs(big, exist_ok=True)
for j, (name, mib) in enumerate([("intro.mp4", 4), ("manual.pdf", 2), ("search-index.json", 3),
                                 ("hero.webp", 1), ("fonts.woff2", 1)]):
    data = text(mib << 20) if name.endswith(".json") else rnd.randbytes(mib << 20)
    with open(os.path.join(big, name), "wb") as f:
        f.write(data)
EOF
SITE_FILES="$(find "$SITE" -type f | wc -l)"
SITE_BYTES="$(du -sb --apparent-size "$SITE" | cut -f1)"
echo "bench: site: $SITE_FILES files, $SITE_BYTES bytes" >&2
# read it once so every tool starts from a warm page cache
tar -cf - -C "$WORK/src" site | cat >/dev/null

# skopeo's input: an OCI layout holding the folder packed by tar -czf (not timed)
LAYOUT="$WORK/layout"
mkdir -p "$LAYOUT/blobs/sha256"
tar -czf "$WORK/site-prepacked.tar.gz" -C "$WORK/src" site
PRE_DIGEST="$(openssl dgst -sha256 -r "$WORK/site-prepacked.tar.gz" | cut -c1-64)"
PRE_SIZE="$(stat -c %s "$WORK/site-prepacked.tar.gz")"
mv "$WORK/site-prepacked.tar.gz" "$LAYOUT/blobs/sha256/$PRE_DIGEST"
printf '{}' >"$LAYOUT/cfg.tmp"
CFG_DIGEST="$(openssl dgst -sha256 -r "$LAYOUT/cfg.tmp" | cut -c1-64)"
mv "$LAYOUT/cfg.tmp" "$LAYOUT/blobs/sha256/$CFG_DIGEST"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.title":"site"}}]}' \
  "$CFG_DIGEST" "$PRE_DIGEST" "$PRE_SIZE" >"$LAYOUT/man.tmp"
MAN_DIGEST="$(openssl dgst -sha256 -r "$LAYOUT/man.tmp" | cut -c1-64)"
MAN_SIZE="$(stat -c %s "$LAYOUT/man.tmp")"
mv "$LAYOUT/man.tmp" "$LAYOUT/blobs/sha256/$MAN_DIGEST"
printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
  "$MAN_DIGEST" "$MAN_SIZE" >"$LAYOUT/index.json"

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
printf 'tool\top\trun\twall_s\tcpu_s\trss_kib\treg_cpu_s\tstatus\treqs\tnote\n' >"$RESULTS"

# measure TOOL OP RUN CMD...: time CMD, write one row (with the registry requests it caused).
measure() {
  local tool=$1 op=$2 run=$3; shift 3
  local tf="$WORK/time.out" err="$WORK/cmd.err" rc=0 t0 t1 r0 r1 lines0 u s m reqs wall status=ok
  sync_log || true
  lines0="$(wc -l <"$REG_LOG")"
  r0="$(reg_cpu_ticks)"
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S %M' -o "$tf" "$@" >"$err" 2>&1 </dev/null || rc=$?
  t1=$EPOCHREALTIME
  r1="$(reg_cpu_ticks)"
  sync_log || true
  read -r u s m < <(tail -n 1 "$tf")
  reqs="$(tail -n +"$((lines0 + 1))" "$REG_LOG" | grep -E '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/' \
    | grep -vcF '/bench-sentinel/' || true)"
  wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')"
  LAST_OK=1; NOTE=""
  if [ "$rc" -ne 0 ]; then
    status=fail; LAST_OK=0
    echo "bench: $tool $op (run $run) FAILED (exit $rc):" >&2
    tail -n 5 "$err" | sed 's/^/    /' >&2
  fi
  ROW="$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$tool" "$op" "$run" "$wall" \
    "$(awk -v a="$u" -v b="$s" 'BEGIN{printf "%.2f", a + b}')" "$m" \
    "$(awk -v a="$r0" -v b="$r1" -v t="$CLK_TCK" 'BEGIN{printf "%.2f", (b - a) / t}')" "$status" "$reqs")"
  printf 'bench: run %s %-8s %-9s %8.3f s  %s\n' "$run" "$tool" "$op" "$wall" "$status" >&2
}
add_note() { NOTE="${NOTE:+$NOTE; }$1"; echo "bench:   NOTE: $1" >&2; }
emit_row() { printf '%s\t%s\n' "$ROW" "$NOTE" >>"$RESULTS"; }

OCI_ACCEPT='application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json'
check_push() { # REPO
  if [ "$LAST_OK" = 1 ] && [ "$(curl -s -o /dev/null -w '%{http_code}' -I -H "Accept: $OCI_ACCEPT" \
       "http://$HOST/v2/$1/manifests/v1" || true)" != 200 ]; then
    add_note "no manifest $1:v1"
  fi
  emit_row
}
check_pull() { # DIR: DIR/site must equal the site
  if [ "$LAST_OK" = 1 ] && ! diff -rq "$SITE" "$1/site" >/dev/null 2>&1; then
    add_note "MISMATCH: $1/site differs from the site"
  fi
  emit_row
  rm -rf "$1"
}

do_push() { # TOOL RUN KIND
  local tool=$1 run=$2 kind=$3 repo="site-$1-$2"
  case "$tool" in
    tar)
      measure tar "push-$kind" "$run" tar -czf "$WORK/tar-$run.tar.gz" -C "$WORK/src" site
      emit_row; rm -f "$WORK/tar-$run.tar.gz" ;;
    skopeo)
      rm -f "$SKOPEO_CACHE"
      measure skopeo "push-$kind" "$run" skopeo --insecure-policy copy -q --preserve-digests --dest-tls-verify=false \
        "oci:$LAYOUT:v1" "docker://$HOST/$repo:v1"
      check_push "$repo" ;;
    oras-py)
      measure oras-py "push-$kind" "$run" "$PY" "$WORK/oras_push.py" "$HOST" "$HOST/$repo:v1" "$SITE"
      check_push "$repo" ;;
    sealpack)
      if [ "$kind" = cold ]; then rm -rf "$WORK/sealpack-cache-$run"; fi
      export SEALPACK_CACHE_DIR="$WORK/sealpack-cache-$run"
      measure sealpack "push-$kind" "$run" "$SEALPACK_BIN" --plain-http -q push "$SITE" --to "$HOST/$repo:v1"
      check_push "$repo" ;;
  esac
}

do_pull() { # TOOL RUN
  local tool=$1 run=$2 repo="site-$1-$2" out="$WORK/pull/$1-$2"
  mkdir -p "$out"
  case "$tool" in
    oras-py) measure oras-py pull "$run" "$PY" "$WORK/oras_pull.py" "$HOST" "$HOST/$repo:v1" "$out" ;;
    sealpack) measure sealpack pull "$run" "$SEALPACK_BIN" --plain-http -q pull "$HOST/$repo:v1" -o "$out" ;;
    *) return 0 ;;
  esac
  check_pull "$out"
}

# ------------------------------------------------------------------------------------------- run
start_registry
REG_VERSION="$("$REGISTRY_BIN" --version 2>&1 | awk '{print $NF}')"
echo "bench: docker-registry $REG_VERSION on $HOST (pid $REG_PID), work dir $WORK" >&2
TOOLS=(tar skopeo oras-py sealpack)
for run in $(seq 1 "$RUNS"); do
  n=${#TOOLS[@]}
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${TOOLS[$(( (i + run - 1) % n ))]}"); done
  echo "bench: run $run/$RUNS, order: ${order[*]}" >&2
  for t in "${order[@]}"; do do_push "$t" "$run" cold; done
  do_push sealpack "$run" warm
  for t in "${order[@]}"; do do_pull "$t" "$run"; done
done

# ------------------------------------------------------------------------------------------- report
"$PY" - "$RESULTS" "$RUNS" "$SITE_FILES" "$SITE_BYTES" "$REG_VERSION" "$(nproc)" <<'EOF'
import csv, statistics, sys
path, runs, files, size, reg_version, ncpu = sys.argv[1:7]
rows = list(csv.DictReader(open(path), delimiter="\t"))
ok = lambda r: r["status"] == "ok" and "MISMATCH" not in r["note"] and "no manifest" not in r["note"]
med = lambda xs: statistics.median(xs) if xs else None
oras = {(r["op"].split("-")[0], r["run"]): float(r["wall_s"]) for r in rows if r["tool"] == "oras-py" and ok(r)}
print()
print(f"sealpack site bench: {files} files, {int(size) / 1e6:.1f} MB, {runs} run(s), docker-registry {reg_version} "
      f"(plain http, loopback), {ncpu} cores; medians")
hdr = f"{'operation':<30}{'ok/n':>6}{'wall s':>9}{'client CPU s':>14}{'peak RSS MiB':>14}{'registry CPU s':>16}{'reqs':>6}{'x oras-py':>11}  notes"
print(hdr)
print("-" * len(hdr))
summary = {}
labels = {"tar": "tar -czf (local)", "skopeo": "skopeo (pre-packed)"}
for op in ["push-cold", "push-warm", "pull"]:
    for tool in ["tar", "skopeo", "oras-py", "sealpack"]:
        rs = [r for r in rows if r["tool"] == tool and r["op"] == op]
        if not rs:
            continue
        good = [r for r in rs if ok(r)]
        f = lambda v, fmt: (fmt % v) if v is not None else "-"
        kind = op.split("-")[0]
        ratio = med([float(r["wall_s"]) / oras[(kind, r["run"])] for r in good if (kind, r["run"]) in oras])
        notes = sorted({n for r in rs for n in r["note"].split("; ") if n})
        if len(good) < len(rs):
            notes.append(f"{len(rs) - len(good)} failed")
        label = f"{op.replace('-', ' ')} {labels.get(tool, tool)}"
        print(f"{label:<30}{len(good):>3}/{len(rs):<2}{f(med([float(r['wall_s']) for r in good]), '%.3f'):>9}"
              f"{f(med([float(r['cpu_s']) for r in good]), '%.2f'):>14}"
              f"{f(med([int(r['rss_kib']) / 1024 for r in good]), '%.0f'):>14}"
              f"{f(med([float(r['reg_cpu_s']) for r in good]), '%.2f'):>16}"
              f"{f(med([int(r['reqs']) for r in good]), '%d'):>6}{f(ratio, '%.2f'):>11}  {'; '.join(notes)}")
        summary[(tool, op)] = ratio
print("x oras-py = median over runs of (tool wall / oras-py wall in the same run), pushes vs oras-py's push.")
print("reqs = registry requests (access log) per operation; a push includes packing the folder.")
print()
r = summary.get(("sealpack", "push-cold"))
if r is None:
    print("targets:\n  FAIL  sealpack cold push: no successful measurement")
else:
    print(f"targets:\n  {'PASS' if r <= 0.5 else 'FAIL'}  sealpack cold push of the site, x oras-py: {r:.2f} (<= 0.5)")
EOF
