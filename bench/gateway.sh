#!/usr/bin/env bash
# Gateway load test: the same trivial upstream reached (a) directly, (b) via a
# bare httputil.ReverseProxy with a big idle pool, (c) via nginx (1 worker,
# keep-alive upstream) and (d) via the fnmarket gateway with auth, rate limit,
# spend cap and metering on real Redis. Prints throughput, p50/p99 and peak
# memory side by side, then the ratios (d)/(b) and (d)/(c).
#
# Needs: wrk and nginx (apt-get install wrk nginx-light), Redis on
# 127.0.0.1:6379 (REDIS_URL to override). Usage: bench/gateway.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
CONNS="${CONNS:-32}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx is required: apt-get install nginx-light" >&2; exit 1; }

go build -o "$WORK/upstream" ./bench/upstream
go build -o "$WORK/rproxy" ./bench/rproxy
go build -o "$WORK/fnmarket" ./cmd/fnmarket
go build -o "$WORK/wasmmin" ./bench/wasmmin

"$WORK/upstream" -addr 127.0.0.1:9101 & PIDS+=($!); UP_PID=$!
"$WORK/rproxy" -addr 127.0.0.1:9102 -target http://127.0.0.1:9101 & PIDS+=($!); RP_PID=$!

mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream fn { server 127.0.0.1:9101; keepalive 256; }
  server {
    listen 127.0.0.1:9103;
    location / { proxy_pass http://fn; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & PIDS+=($!); NGINX_PID=$!

FNMARKET_ADDR=127.0.0.1:9104 FNMARKET_DEBUG_ADDR=127.0.0.1:9105 FNMARKET_DATA_DIR="$WORK/data" REDIS_URL="$REDIS_URL" \
  FNMARKET_ALLOW_PRIVATE_UPSTREAMS=true FNMARKET_RATE_LIMIT_PER_KEY=1000000 FNMARKET_LOG_LEVEL=warn \
  "$WORK/fnmarket" serve >"$WORK/fnmarket.out" 2>"$WORK/fnmarket.log" & PIDS+=($!); FN_PID=$!

for _ in $(seq 1 100); do curl -fs http://127.0.0.1:9104/readyz >/dev/null 2>&1 && break; sleep 0.2; done
J='Content-Type: application/json'
api() {
  local args=(-sS --fail-with-body -X "$1" "http://127.0.0.1:9104$2" -H "$J")
  [ -n "$3" ] && args+=(-H "Authorization: Bearer $3")
  [ -n "${4:-}" ] && args+=(-d "$4")
  curl "${args[@]}" || { echo "API call $1 $2 failed" >&2; tail -5 "$WORK/fnmarket.log" >&2; return 1; }
}
TOK=$(api POST /api/v1/auth/signup "" '{"email":"bench@example.com","password":"correct horse battery","name":"Bench"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
api POST /api/v1/vendor "$TOK" '{"slug":"bench","display_name":"Bench"}' >/dev/null
FID=$(api POST /api/v1/functions "$TOK" '{"name":"noop","backend":{"type":"http","url":"http://127.0.0.1:9101/"},"pricing":{"per_call":"0.0001","per_compute_ms":"0.000002","free_calls_per_month":100},"timeout_ms":5000}' | sed -E 's/^\{"id":"([^"]+)".*/\1/')
api POST "/api/v1/functions/$FID/publish" "$TOK" '{"version":1}' >/dev/null
WID=$(api POST /api/v1/functions "$TOK" "{\"name\":\"hello-wasm\",\"backend\":{\"type\":\"wasm\",\"module_base64\":\"$("$WORK/wasmmin")\"},\"pricing\":{\"per_call\":\"0.0001\",\"per_compute_ms\":\"0.000002\"},\"timeout_ms\":5000}" | sed -E 's/^\{"id":"([^"]+)".*/\1/')
api POST "/api/v1/functions/$WID/publish" "$TOK" '{"version":1}' >/dev/null
KEY=$(api POST /api/v1/keys "$TOK" '{"name":"bench","monthly_spend_cap":"1000000"}' | sed -E 's/.*"key":"([^"]+)".*/\1/')
curl -fsS -o /dev/null -H "X-API-Key: $KEY" http://127.0.0.1:9104/v1/invoke/bench/noop || { echo "gateway call failed" >&2; cat "$WORK/fnmarket.log" >&2; exit 1; }

# peak resident memory (VmHWM) of a process, in MB
peak() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

run() { # name url pid [header]
  local out
  if [ -n "${4:-}" ]; then
    out=$(wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -H "$4" "$2")
  else
    out=$(wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "$2")
  fi
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
  printf "%-34s %10s %10s %10s %8s MB %s\n" "$1" "$rps" "$p50" "$p99" "$(peak "$3")" "${non2xx:+($non2xx non-2xx!)}"
  echo "$rps" > "$WORK/rps.$5"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); wrk -t2 -c$CONNS -d${DUR}s"
printf "%-34s %10s %10s %10s %11s\n" "target" "req/s" "p50" "p99" "peak RSS"
run "(a) upstream direct" http://127.0.0.1:9101/ "$UP_PID" "" a
run "(b) httputil.ReverseProxy" http://127.0.0.1:9102/ "$RP_PID" "" b
run "(c) nginx 1 worker" http://127.0.0.1:9103/ "$NGINX_PID" "" c
if [ -n "${PROFILE:-}" ]; then
  (sleep 1; curl -s -o "$PROFILE" "http://127.0.0.1:9105/debug/pprof/profile?seconds=$((DUR-2))") &
fi
run "(d) fnmarket gateway" http://127.0.0.1:9104/v1/invoke/bench/noop "$FN_PID" "X-API-Key: $KEY" d
run "(e) fnmarket gateway, wasm fn" http://127.0.0.1:9104/v1/invoke/bench/hello-wasm "$FN_PID" "X-API-Key: $KEY" e
echo "single-connection latency through the gateway (wrk -t1 -c1):"
for t in noop hello-wasm; do
  wrk -t1 -c1 -d"$((DUR/2))s" --latency -H "X-API-Key: $KEY" "http://127.0.0.1:9104/v1/invoke/bench/$t" | awk -v t="$t" '$1=="50%" {p50=$2} $1=="99%" {p99=$2} END {printf "  %-12s p50 %s  p99 %s\n", t, p50, p99}'
done
wrk -t1 -c1 -d"$((DUR/2))s" --latency http://127.0.0.1:9101/ | awk '$1=="50%" {p50=$2} $1=="99%" {p99=$2} END {printf "  %-12s p50 %s  p99 %s\n", "upstream", p50, p99}'
awk -v d="$(cat "$WORK/rps.d")" -v b="$(cat "$WORK/rps.b")" -v c="$(cat "$WORK/rps.c")" \
  'BEGIN { printf "ratios: (d)/(b) = %.2f   (d)/(c) = %.2f\n", d/b, d/c }'
