#!/usr/bin/env bash
# Gateway load test (issue 14): one run, one table. The same trivial upstream
# reached
#   (a) directly,
#   (b) via a bare httputil.ReverseProxy with a big idle pool (bench/rproxy),
#   (c) via nginx (1 worker, keep-alive upstream),
#   (d) via fnmarket on real Redis (REDIS_URL) and its default SQLite data dir,
#   (e) via fnmarket embedded (no REDIS_URL: in-process Redis + SQLite),
# and WebAssembly functions through (d)'s gateway:
#   (f) the hand-assembled minimal command module, a fresh instance per call,
#   (g) the hand-assembled minimal reactor with "instance_reuse": true,
#   (h) the Go guest examples/reuse-echo with "instance_reuse": true,
#   (i) the same Go guest fresh: a third fnmarket, like (d) but with
#       FNMARKET_WASM_REUSE_MAX_CALLS=1, so every call gets a new instance.
# Every fnmarket call goes through auth, rate limit, spend cap and metering.
#
# Prints req/s, p50, p99 (microseconds, from wrk's own histogram via a Lua
# done() hook), each process's peak RSS during its row (VmHWM, reset before
# the row) and the count of failed answers, under CONNS connections; then a
# lone caller (wrk -t1 -c1) per target with the latency each adds over the
# upstream direct; then the req/s ratios (d)/(b), (d)/(c), (e)/(d), (e)/(b).
# Every target must answer 200 before it is measured; during the runs any
# answer of 400 or more (what wrk counts as non-2xx) or socket error fails
# the run (exit 1) after the table.
#
# Needs: wrk and nginx (apt-get install wrk nginx-light), Go, Redis on
# 127.0.0.1:6379 (REDIS_URL to override).
# Usage: bench/gateway.sh [seconds per row]    (lone-caller rows: half that)
# PORT_BASE (default 9100) moves the ports used, PORT_BASE+1 .. +9.
# FNMARKET_ENV="VAR=value ..." is added to the fnmarket servers' environment
# only (GOMAXPROCS=1, GOGC=400, ...), not to the yardsticks'.
# PROFILE=cpu.pprof [PROFILE_ROW=d|e|f|g|h|i] takes a CPU profile of that
# row's fnmarket through its FNMARKET_DEBUG_ADDR (pprof).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
CONNS="${CONNS:-32}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
PROFILE_ROW="${PROFILE_ROW:-d}"
PORT="${PORT_BASE:-9100}" # the run listens on 127.0.0.1, ports PORT_BASE+1 .. +9
WORK="$(mktemp -d)"
PREFIX="bench$$"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if command -v redis-cli >/dev/null; then # drop this run's keys from the real Redis
    redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX*" 2>/dev/null | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx is required: apt-get install nginx-light" >&2; exit 1; }
for p in $(seq $((PORT + 1)) $((PORT + 9))); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "127.0.0.1:$p is taken (another run?); set PORT_BASE to another range" >&2
    exit 1
  fi
done

go build -o "$WORK/upstream" ./bench/upstream
go build -o "$WORK/rproxy" ./bench/rproxy
go build -o "$WORK/fnmarket" ./cmd/fnmarket
go build -o "$WORK/wasmmin" ./bench/wasmmin
GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -o "$WORK/reuse-echo.wasm" ./examples/reuse-echo

"$WORK/upstream" -addr 127.0.0.1:$((PORT + 1)) 2>"$WORK/upstream.log" & PIDS+=($!); UP_PID=$!
"$WORK/rproxy" -addr 127.0.0.1:$((PORT + 2)) -target http://127.0.0.1:$((PORT + 1)) 2>"$WORK/rproxy.log" & PIDS+=($!); RP_PID=$!

mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream fn { server 127.0.0.1:$((PORT + 1)); keepalive 256; }
  server {
    listen 127.0.0.1:$((PORT + 3));
    location / { proxy_pass http://fn; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" & PIDS+=($!); NGINX_PID=$!

# serve NAME PORT DEBUGPORT [VAR=value...]: starts an fnmarket serve with its
# own data dir, pprof on DEBUGPORT; its pid goes to $WORK/NAME.pid.
serve() {
  local name=$1 port=$2 debug=$3
  shift 3
  env FNMARKET_ADDR="127.0.0.1:$port" FNMARKET_DEBUG_ADDR="127.0.0.1:$debug" FNMARKET_DATA_DIR="$WORK/data-$name" \
    FNMARKET_ALLOW_PRIVATE_UPSTREAMS=true FNMARKET_RATE_LIMIT_PER_KEY=1000000 FNMARKET_LOG_LEVEL=warn ${FNMARKET_ENV:-} "$@" \
    "$WORK/fnmarket" serve >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  echo $! >"$WORK/$name.pid"
}
serve d $((PORT + 4)) $((PORT + 5)) REDIS_URL="$REDIS_URL" FNMARKET_REDIS_PREFIX="${PREFIX}d:"
serve e $((PORT + 6)) $((PORT + 7))
serve i $((PORT + 8)) $((PORT + 9)) REDIS_URL="$REDIS_URL" FNMARKET_REDIS_PREFIX="${PREFIX}i:" FNMARKET_WASM_REUSE_MAX_CALLS=1
D_PID=$(cat "$WORK/d.pid") E_PID=$(cat "$WORK/e.pid") I_PID=$(cat "$WORK/i.pid")

# The functions' bodies: too big for a command-line argument, so in files.
MIN=$("$WORK/wasmmin") MINR=$("$WORK/wasmmin" -reactor) ECHO=$(base64 -w0 "$WORK/reuse-echo.wasm")
PRICING='"pricing":{"per_call":"0.0001","per_compute_ms":"0.000002","free_calls_per_month":100},"timeout_ms":5000'
echo "{\"name\":\"noop\",\"backend\":{\"type\":\"http\",\"url\":\"http://127.0.0.1:$((PORT + 1))/\"},$PRICING}" >"$WORK/fn-noop.json"
echo "{\"name\":\"wasm-min\",\"backend\":{\"type\":\"wasm\",\"module_base64\":\"$MIN\"},$PRICING}" >"$WORK/fn-wasm-min.json"
echo "{\"name\":\"wasm-min-reuse\",\"backend\":{\"type\":\"wasm\",\"module_base64\":\"$MINR\",\"instance_reuse\":true},$PRICING}" >"$WORK/fn-wasm-min-reuse.json"
echo "{\"name\":\"go-echo\",\"backend\":{\"type\":\"wasm\",\"module_base64\":\"$ECHO\",\"instance_reuse\":true},$PRICING}" >"$WORK/fn-go-echo.json"

# setup BASE NAME: on the fnmarket at BASE, signs up a vendor "bench",
# publishes noop (HTTP, the upstream), wasm-min, wasm-min-reuse and go-echo,
# signs up a consumer and makes an API key, written to $WORK/NAME.key.
setup() {
  local base=$1 name=$2
  for _ in $(seq 1 150); do curl -fs "$base/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  api() { # method path token [@file|json]
    local args=(-sS --fail-with-body -X "$1" "$base$2" -H 'Content-Type: application/json')
    [ -n "$3" ] && args+=(-H "Authorization: Bearer $3")
    [ -n "${4:-}" ] && args+=(--data-binary "$4")
    curl "${args[@]}" || { echo "$name: API call $1 $2 failed" >&2; tail -5 "$WORK/$name.log" >&2; return 1; }
  }
  local vendor consumer fid f
  vendor=$(api POST /api/v1/auth/signup "" '{"email":"vendor@example.com","password":"correct horse battery","name":"Vendor"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  api POST /api/v1/vendor "$vendor" '{"slug":"bench","display_name":"Bench"}' >/dev/null
  for f in noop wasm-min wasm-min-reuse go-echo; do
    fid=$(api POST /api/v1/functions "$vendor" "@$WORK/fn-$f.json" | sed -E 's/^\{"id":"([^"]+)".*/\1/')
    api POST "/api/v1/functions/$fid/publish" "$vendor" '{"version":1}' >/dev/null
  done
  consumer=$(api POST /api/v1/auth/signup "" '{"email":"consumer@example.com","password":"correct horse battery","name":"Consumer"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  api POST /api/v1/keys "$consumer" '{"name":"bench","monthly_spend_cap":"1000000"}' | sed -E 's/.*"key":"([^"]+)".*/\1/' >"$WORK/$name.key"
}
setup http://127.0.0.1:$((PORT + 4)) d
setup http://127.0.0.1:$((PORT + 6)) e
setup http://127.0.0.1:$((PORT + 8)) i
KEY_D=$(cat "$WORK/d.key") KEY_E=$(cat "$WORK/e.key") KEY_I=$(cat "$WORK/i.key")

# Rows: id label url pid [api key] [debug port]
ROWS=(
  "a|(a) upstream direct|http://127.0.0.1:$((PORT + 1))/|$UP_PID||"
  "b|(b) httputil.ReverseProxy|http://127.0.0.1:$((PORT + 2))/|$RP_PID||"
  "c|(c) nginx 1 worker|http://127.0.0.1:$((PORT + 3))/|$(pgrep -P "$NGINX_PID" | head -1 || echo "$NGINX_PID")||"
  "d|(d) fnmarket, real Redis|http://127.0.0.1:$((PORT + 4))/v1/invoke/bench/noop|$D_PID|$KEY_D|$((PORT + 5))"
  "e|(e) fnmarket embedded|http://127.0.0.1:$((PORT + 6))/v1/invoke/bench/noop|$E_PID|$KEY_E|$((PORT + 7))"
  "f|(f) wasm minimal, fresh|http://127.0.0.1:$((PORT + 4))/v1/invoke/bench/wasm-min|$D_PID|$KEY_D|$((PORT + 5))"
  "g|(g) wasm minimal reactor, reuse|http://127.0.0.1:$((PORT + 4))/v1/invoke/bench/wasm-min-reuse|$D_PID|$KEY_D|$((PORT + 5))"
  "h|(h) Go reuse-echo, reuse|http://127.0.0.1:$((PORT + 4))/v1/invoke/bench/go-echo|$D_PID|$KEY_D|$((PORT + 5))"
  "i|(i) Go reuse-echo, fresh|http://127.0.0.1:$((PORT + 8))/v1/invoke/bench/go-echo|$I_PID|$KEY_I|$((PORT + 9))"
)

# Every target answers 200 before it is measured (this also compiles the
# modules and starts the reused instances).
for row in "${ROWS[@]}"; do
  IFS='|' read -r id label url pid key debug <<<"$row"
  code=$(curl -s -o "$WORK/check.$id" -w '%{http_code}' ${key:+-H "X-API-Key: $key"} "$url")
  [ "$code" = 200 ] || { echo "$label: $url answered $code: $(head -c 300 "$WORK/check.$id")" >&2; exit 1; }
done
grep -q "calls=" "$WORK/check.h" || { echo "(h) answered $(cat "$WORK/check.h"), not reuse-echo" >&2; exit 1; }

cat >"$WORK/result.lua" <<'LUA'
done = function(s, lat, req)
  io.write(string.format("RESULT %d %.0f %.0f %.0f %d %d %d %d %d\n", s.requests, s.duration,
    lat:percentile(50), lat:percentile(99), s.errors.status, s.errors.connect, s.errors.read, s.errors.write, s.errors.timeout))
end
LUA

FAILED=0
# cputicks PID: the process's user + system CPU time so far, in clock ticks.
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure ID THREADS CONNS SECONDS: runs wrk on row ID; sets RPS P50 P99 BAD
# and CPU (the serving process's user + system CPU per call, µs).
measure() {
  local row
  for row in "${ROWS[@]}"; do [ "${row%%|*}" = "$1" ] && break; done
  IFS='|' read -r id label url pid key debug <<<"$row"
  [ -w "/proc/$pid/clear_refs" ] && echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true # reset VmHWM
  if [ -n "${PROFILE:-}" ] && [ "$PROFILE_ROW" = "$id" ] && [ "$3" != 1 ]; then
    (sleep 1; curl -s -o "$PROFILE" "http://127.0.0.1:$debug/debug/pprof/profile?seconds=$(($4 > 3 ? $4 - 2 : 1))") &
  fi
  local out t0 t1
  t0=$(cputicks "$pid")
  out=$(wrk -t"$2" -c"$3" -d"${4}s" -s "$WORK/result.lua" ${key:+-H "X-API-Key: $key"} "$url" | awk '$1=="RESULT"')
  [ -n "$out" ] || { echo "wrk gave no result for $label" >&2; exit 1; }
  local n us st co rd wr to
  read -r _ n us P50 P99 st co rd wr to <<<"$out"
  RPS=$(awk -v n="$n" -v us="$us" 'BEGIN { printf "%.0f", n / (us / 1e6) }')
  CALLS=$n
  t1=$(cputicks "$pid")
  CPU=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
  BAD=$((st + co + rd + wr + to))
  LABEL=$label
  PEAK=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$pid/status")
  if [ "$BAD" != 0 ]; then
    FAILED=1
    echo "!! $label: $st non-2xx, socket errors: connect $co read $rd write $wr timeout $to" >&2
  fi
}

echo "fnmarket $(git describe --always --dirty 2>/dev/null || echo ?) ($(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo ?)), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(go version | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(nginx -v 2>&1 | cut -d' ' -f3)"
echo
echo "under load: wrk -t2 -c$CONNS -d${DUR}s (p50/p99 in µs; CPU = the serving process's user + system CPU per call; peak RSS = its VmHWM during the row)"
printf "%-34s %9s %9s %9s %8s %9s %8s\n" "target" "req/s" "p50 µs" "p99 µs" "CPU µs" "peak RSS" "non-2xx"
declare -A R
# redisstat: Redis's commands processed and bytes in and out so far.
redisstat() { redis-cli -u "$REDIS_URL" info stats | tr -d '\r' | awk -F: '/^total_commands_processed|^total_net_input_bytes|^total_net_output_bytes/ {printf "%s ", $2}'; }
for id in a b c d e f g h i; do
  [ "$id" = d ] && read -r CMD0 IN0 OUT0 <<<"$(redisstat)"
  measure "$id" 2 "$CONNS" "$DUR"
  [ "$id" = d ] && { read -r CMD1 IN1 OUT1 <<<"$(redisstat)"; CALLS_D=$CALLS; }
  R[$id]=$RPS
  printf "%-34s %9s %9s %9s %8s %6s MB %8s\n" "$LABEL" "$RPS" "$P50" "$P99" "$CPU" "$PEAK" "$BAD"
done

LONE=$(( DUR / 2 > 0 ? DUR / 2 : 1 ))
echo
echo "lone caller: wrk -t1 -c1 -d${LONE}s (added = p50 - upstream direct p50)"
printf "%-34s %9s %9s %9s %10s %8s\n" "target" "calls/s" "p50 µs" "p99 µs" "added µs" "non-2xx"
for id in a b c d e f g h i; do
  measure "$id" 1 1 "$LONE"
  [ "$id" = a ] && UP50=$P50
  printf "%-34s %9s %9s %9s %10s %8s\n" "$LABEL" "$RPS" "$P50" "$P99" "$((P50 - UP50))" "$BAD"
done

echo
awk -v n="$CALLS_D" -v c=$((CMD1 - CMD0)) -v i=$((IN1 - IN0)) -v o=$((OUT1 - OUT0)) 'BEGIN {
  printf "Redis during (d), per call: %.3f commands, %.1f bytes in, %.1f bytes out (%d calls; the whole server, other clients included)\n", c/n, i/n, o/n, n }'
awk -v b="${R[b]}" -v c="${R[c]}" -v d="${R[d]}" -v e="${R[e]}" 'BEGIN {
  printf "req/s ratios: (d)/(b) = %.2f   (d)/(c) = %.2f   (e)/(d) = %.2f   (e)/(b) = %.2f\n", d/b, d/c, e/d, e/b }'
if [ "$FAILED" != 0 ]; then
  echo "FAILED: some calls did not answer 2xx (see the !! lines above)" >&2
  exit 1
fi
echo "all calls answered 2xx"
