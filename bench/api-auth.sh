#!/usr/bin/env bash
# Benchmark: what API keys cost. Authenticated GET /api/v1/whoami (key check from the cache,
# GCRA rate limit, usage record written in batches) against unauthenticated GET /healthz, on
# one `switchyard api` process (embedded store), with wrk on loopback. Runs the two
# alternately ROUNDS times and prints the medians of throughput and of the server's own CPU
# time per request (read from /proc, so wrk's share of the two cores is not counted).
#
#   bench/api-auth.sh                       # 3 rounds × 5 s, 2 wrk threads, 64 connections
#   ROUNDS=5 DURATION=10s CONNECTIONS=128 bench/api-auth.sh
#   BIN=/tmp/old/switchyard bench/api-auth.sh   # another build, to compare
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "needs wrk (Debian package wrk)" >&2; exit 1; }
# BIN=<path> benchmarks that binary instead (e.g. an older build, to compare).
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=$PWD/target/release/switchyard
fi
DIR=$(mktemp -d)
PORT=${PORT:-18099}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
export SWITCHYARD_DATA_DIR=$DIR SWITCHYARD_LISTEN=127.0.0.1:$PORT SWITCHYARD_LOG=warn
unset DATABASE_URL REDIS_URL

# A key whose limit the benchmark cannot reach, so every request does the full check.
KEY=$("$BIN" keys create --name bench --scope jobs:read --rate-limit 1000000000 2>/dev/null)
"$BIN" api >"$DIR/api.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }

# Prints "<requests/s> <server CPU µs per request>".
measure() {
  local before after out reqs
  before=$(cpu_ticks)
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$@")
  after=$(cpu_ticks)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$out" | awk -v b="$before" -v a="$after" -v r="$reqs" -v t="$TICKS" \
    '/Requests\/sec/ {printf "%.0f %.2f\n", $2, (a - b) / t * 1e6 / r}'
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

plain=(); authed=()
for _ in $(seq 1 "$ROUNDS"); do
  plain+=("$(measure "http://127.0.0.1:$PORT/healthz")")
  authed+=("$(measure -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/api/v1/whoami")")
done
p_rps=$(printf '%s\n' "${plain[@]}" | awk '{print $1}' | median)
p_cpu=$(printf '%s\n' "${plain[@]}" | awk '{print $2}' | median)
a_rps=$(printf '%s\n' "${authed[@]}" | awk '{print $1}' | median)
a_cpu=$(printf '%s\n' "${authed[@]}" | awk '{print $2}' | median)
echo "GET /healthz (no key):          ${p_rps} req/s, ${p_cpu} µs server CPU per request"
echo "GET /api/v1/whoami (key):       ${a_rps} req/s, ${a_cpu} µs server CPU per request"
awk -v p="$p_rps" -v a="$a_rps" -v pc="$p_cpu" -v ac="$a_cpu" 'BEGIN {
  printf "throughput cost: %.1f %%; extra server CPU: %.2f µs per request\n", (1 - a / p) * 100, ac - pc }'
sleep 2  # let the usage writer flush
curl -fs "http://127.0.0.1:$PORT/metrics" | grep -E '^switchyard_usage_events_dropped_total' || echo "usage records dropped: 0"
