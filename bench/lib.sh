# bench/lib.sh: what the benchmarks share, sourced by bench/*.sh: a local docker-registry (distribution 2.8) on a
# free loopback port with its access log, a way to wait until the log holds every answered request, and the
# registry's CPU time. Callers set PY (a python3), WORK (their work folder), REG_LOG (the access log file) and
# REGISTRY_BIN before calling start_registry, which sets HOST and REG_PID.

die() { echo "bench: $*" >&2; exit 1; }

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SENTINEL_N=0
# sync_log: make sure the access log holds every request answered so far (lines are written after the
# response): send a sentinel request and wait for its line.
sync_log() {
  SENTINEL_N=$((SENTINEL_N + 1))
  local marker="/bench-sentinel/$$-$SENTINEL_N" i
  curl -s -o /dev/null --max-time 5 "http://$HOST$marker" || return 1
  for i in $(seq 1 200); do
    grep -qF "\"GET $marker " "$REG_LOG" && return 0
    sleep 0.01
  done
  return 1
}

start_registry() {
  local port i
  mkdir -p "$WORK/registry"
  for _ in 1 2 3 4 5 6 7 8; do
    port="$(free_port)"
    HOST="127.0.0.1:$port"
    cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $HOST
  secret: $(openssl rand -hex 16)
EOF
    "$REGISTRY_BIN" serve "$WORK/registry.yml" </dev/null >>"$REG_LOG" 2>&1 &
    REG_PID=$!
    for i in $(seq 1 200); do
      kill -0 "$REG_PID" 2>/dev/null || break
      if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$HOST/v2/" || true)" = 200 ] \
         && sync_log && kill -0 "$REG_PID" 2>/dev/null; then
        return 0
      fi
      sleep 0.05
    done
    kill "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
    REG_PID=""
  done
  cat "$REG_LOG" >&2
  die "docker-registry did not start"
}

reg_cpu_ticks() { awk '{print $14 + $15}' "/proc/$REG_PID/stat"; }
CLK_TCK="$(getconf CLK_TCK)"

# stop_registry: stop the registry start_registry started (cleanup traps call it).
stop_registry() {
  if [ -n "${REG_PID:-}" ] && kill -0 "$REG_PID" 2>/dev/null; then
    kill "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
  fi
}

# skopeo keeps a blob-info cache that makes a "cold" push to a new repository a cross-repository mount: the
# benchmarks clear it before each cold push. skopeo_cache_save keeps the user's copy in WORK (sets SKOPEO_CACHE),
# skopeo_cache_restore puts it back (or removes what the benchmark left).
skopeo_cache_save() {
  if [ "$(id -u)" -eq 0 ]; then
    SKOPEO_CACHE=/var/lib/containers/cache/blob-info-cache-v1.boltdb
  else
    SKOPEO_CACHE="${XDG_DATA_HOME:-$HOME/.local/share}/containers/cache/blob-info-cache-v1.boltdb"
  fi
  SKOPEO_CACHE_BACKUP=""
  if [ -f "$SKOPEO_CACHE" ]; then
    SKOPEO_CACHE_BACKUP="$WORK/skopeo-blob-info-cache.boltdb"
    cp -p "$SKOPEO_CACHE" "$SKOPEO_CACHE_BACKUP"
  fi
}

skopeo_cache_restore() {
  if [ -n "${SKOPEO_CACHE_BACKUP:-}" ] && [ -f "$SKOPEO_CACHE_BACKUP" ]; then
    cp -p "$SKOPEO_CACHE_BACKUP" "$SKOPEO_CACHE" 2>/dev/null || true
  elif [ -n "${SKOPEO_CACHE:-}" ]; then
    rm -f "$SKOPEO_CACHE"
  fi
}
