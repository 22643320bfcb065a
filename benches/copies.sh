#!/usr/bin/env bash
# Bytes copied per request: every call of glibc's memmove (which memcpy is too) in the gateway
# process, counted with a perf uprobe on its length argument, over a fixed number of
# authenticated GETs. Unlike requests per second, the count does not move with the machine's
# load, so it can show a change of a few percent on a shared machine where timing cannot
# (docs/performance.md). Most of it is futures moved by value between layers: a future built
# and then moved into a wrapper, a timer or a box is copied whole, whatever state it is in.
#
#   benches/copies.sh                       # this build: plaintext (the lane), HTTPS/1.1, HTTP/2
#   BASELINE=/tmp/old/gatehouse benches/copies.sh   # and an older build, same requests
#   N=20000 TOP=20 benches/copies.sh        # more requests; the 20 largest copy sizes per target
#
# Needs: perf with uprobes (root or perf_event_paranoid <= 1), h2load (nghttp2-client),
# openssl, curl, glibc with __memmove_avx_unaligned_erms (x86-64 with AVX; PROBE= names
# another). Talks to 127.0.0.1 only. A copy counted is a call, not its cost: a large copy to
# cold memory costs more per byte than a small one in cache.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
TOP=${TOP:-8}
PROBE=${PROBE:-__memmove_avx_unaligned_erms}
for tool in perf h2load openssl curl; do
  command -v "$tool" >/dev/null || { echo "copies.sh needs $tool" >&2; exit 1; }
done
LIBC=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/{print $NF; exit}')
[ -n "$LIBC" ] || { echo "copies.sh: no x86-64 libc.so.6 found" >&2; exit 1; }

cargo build --release --quiet --bin gatehouse --example bench-upstream
# shellcheck source=benches/common.sh
. benches/common.sh
on_exit() { perf probe -q -d "probe_libc:$PROBE" 2>/dev/null || true; }

perf probe -q -d "probe_libc:$PROBE" 2>/dev/null || true
perf probe -q -x "$LIBC" --add "$PROBE len=%dx:u64" \
  || { echo "copies.sh: cannot place a uprobe on $PROBE in $LIBC" >&2; exit 1; }

bench_tls_cert
UP=$(free_port)
"$BIN/examples/bench-upstream" "127.0.0.1:$UP" & PIDS+=($!)
wait_port "$UP"

# start_gateway NAME BINARY: a gateway on fresh ports; sets PID, PLAIN, TLS_PORT.
start_gateway() {
  PLAIN=$(free_port); TLS_PORT=$(free_port)
  bench_tls_gateway_yaml "$PLAIN" "$TLS_PORT" "$UP" > "$WORK/$1.yaml"
  RUST_LOG=warn "$2" run --config "$WORK/$1.yaml" 2>>"$WORK/gateway.log" & PIDS+=($!); PID=$!
  wait_port "$PLAIN"; wait_port "$TLS_PORT"
}

# count NAME PID KIND URL: N requests (after a warm-up), every copy in PID counted.
count() {
  local name=$1 pid=$2 kind=$3 url=$4 args=(-c 64 -t 1 -H "Cookie: gatehouse_access=$COOKIE")
  [ "$kind" = h2 ] && args+=(-m 10) || args+=(--h1)
  h2load "${args[@]}" -n 2000 "$url" >/dev/null
  perf record -q -e "probe_libc:$PROBE" -p "$pid" -o "$WORK/copies.data" -- sleep 600 >/dev/null 2>&1 &
  local rec=$!
  sleep 0.5
  local out
  out=$(h2load "${args[@]}" -n "$N" "$url")
  sleep 0.3
  kill -INT "$rec"; wait "$rec" 2>/dev/null || true
  grep -q "$N succeeded" <<<"$out" || { echo "copies.sh: not every request succeeded:" >&2; echo "$out" >&2; exit 1; }
  perf script -i "$WORK/copies.data" -F trace 2>/dev/null | awk -v n="$N" '
    { for (i = 1; i <= NF; i++) if ($i ~ /^len=/) { split($i, a, "="); c[a[2]]++; calls++; bytes += a[2] } }
    END {
      printf "%.0f %.1f\n", bytes / n, calls / n
      for (k in c) printf "%d %d %.2f\n", k * c[k] / n, k, c[k] / n
    }' > "$WORK/counts"
  read -r bytes calls < "$WORK/counts"
  printf '%-30s %7d bytes copied per request, in %5.1f copies\n' "$name" "$bytes" "$calls"
  tail -n +2 "$WORK/counts" | sort -n -r | head -n "$TOP" \
    | while read -r b len per; do printf '    %6d bytes/request in copies of %5d bytes (%s per request)\n' "$b" "$len" "$per"; done
}

# measure LABEL BINARY: the three targets for one build.
measure() {
  start_gateway "$1" "$2"
  COOKIE=$(curl -s -o /dev/null -c - -H 'content-type: application/json' \
    -d '{"username":"alice","password":"alice-demo-password"}' \
    "http://127.0.0.1:$PLAIN/.gatehouse/login" | awk '$6=="gatehouse_access"{print $7}')
  [ -n "$COOKIE" ] || { echo "could not log in to $1" >&2; exit 1; }
  count "$1 plaintext (the lane)" "$PID" h1 "http://127.0.0.1:$PLAIN/"
  count "$1 HTTPS/1.1 (the lane)" "$PID" h1 "https://127.0.0.1:$TLS_PORT/"
  count "$1 HTTP/2" "$PID" h2 "https://127.0.0.1:$TLS_PORT/"
  kill "$PID"; wait "$PID" 2>/dev/null || true
}

measure gatehouse "$BIN/gatehouse"
[ -z "${BASELINE:-}" ] || measure baseline "$BASELINE"
