#!/usr/bin/env bash
# Instructions per request, counted by callgrind: the gateway and the bare hyper proxy
# (`examples/bare-proxy.rs`, no authentication) each run under valgrind, and every instruction
# either executes in user space over N authenticated GETs (after a warm-up) is counted:
# HTTP/2 over TLS (64 connections x 10 streams), HTTPS/1.1 and plaintext HTTP/1.1 (the lane).
# Unlike requests per second, the count does not move with the machine's load: on a shared
# machine it shows a change of 1% that timing cannot (docs/performance.md). It counts
# instructions, not their cost (a cache miss, a system call) and nothing in the kernel. The
# connections' set-up (a TLS handshake is ~1 M instructions) is taken out: the count is the
# difference between N requests and SHORT (640) over the same number of new connections.
#
#   benches/instructions.sh                 # this build and bare hyper, the three targets
#   BASELINE=/tmp/old/gatehouse benches/instructions.sh   # and an older build, same requests
#   N=10000 KINDS="h2" TOP=30 benches/instructions.sh     # more requests; HTTP/2 only; the 30
#                                           # functions whose own count differs most from bare hyper
#   BROWSER=1 benches/instructions.sh       # each request with a browser's dozen headers too
#   NGINX=1 benches/instructions.sh         # and nginx (as benches/load.sh runs it, no auth)
#
# Keeps the callgrind files in OUT (default: a fresh directory it names) for
# `callgrind_annotate --inclusive=yes --tree=calling FILE`. Needs valgrind, h2load
# (nghttp2-client), openssl, curl, taskset, and nginx with NGINX=1. Talks to 127.0.0.1 only.
# Slow: each process runs ~50x slower under valgrind (about a minute per build and target).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-6000}
# The short run whose count is taken off the long one's: 10 requests per connection.
SHORT=${SHORT:-640}
# BROWSER=1: each request also carries the headers a browser's navigation does.
BROWSER_HEADERS=(
  -H "user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
  -H "accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
  -H "accept-language: en-GB,en;q=0.9" -H "accept-encoding: gzip, deflate, br, zstd"
  -H "sec-fetch-dest: document" -H "sec-fetch-mode: navigate" -H "sec-fetch-site: same-origin"
  -H "sec-fetch-user: ?1" -H "upgrade-insecure-requests: 1" -H "priority: u=0, i"
  -H "referer: https://app.example.com/reports" -H "cache-control: max-age=0"
)
KINDS=${KINDS:-"h2 h1tls h1"}
TOP=${TOP:-0}
for tool in valgrind callgrind_control callgrind_annotate h2load openssl curl taskset ${NGINX:+nginx}; do
  command -v "$tool" >/dev/null || { echo "instructions.sh needs $tool" >&2; exit 1; }
done

cargo build --release --quiet --bin gatehouse --example bench-upstream --example bare-proxy
# shellcheck source=benches/common.sh
. benches/common.sh
OUT=${OUT:-$(mktemp -d /tmp/gatehouse-instructions.XXXXXX)}
mkdir -p "$OUT"

bench_tls_cert
UP=$(free_port)
taskset -c 1 "$BIN/examples/bench-upstream" "127.0.0.1:$UP" & PIDS+=($!)
wait_port "$UP"

# counted NAME PID REQUESTS H2LOAD-ARGS...: every instruction PID executes while h2load makes
# REQUESTS requests; sets TOTAL and FILE (the callgrind dump).
counted() {
  local name=$1 pid=$2 n=$3; shift 3
  callgrind_control -z "$pid" >/dev/null
  local out
  out=$(taskset -c 1 h2load "$@" -n "$n")
  grep -q "$n succeeded" <<<"$out" || { echo "instructions.sh: not every request succeeded:" >&2; echo "$out" >&2; exit 1; }
  callgrind_control -d "$name" "$pid" >/dev/null
  FILE=""
  for _ in $(seq 1 100); do
    FILE=$(grep -l "^desc: Trigger: dump $name\$" "$OUT"/callgrind.out.* 2>/dev/null | head -n 1 || true)
    [ -n "$FILE" ] && break
    sleep 0.1
  done
  [ -n "$FILE" ] || { echo "instructions.sh: callgrind wrote no dump for $name" >&2; exit 1; }
  TOTAL=$(awk '/^(summary|totals):/{print $2; exit}' "$FILE")
}

# count NAME PID KIND URL [COOKIE]: after a warm-up, SHORT requests and then N, each over 64
# new connections; prints the instructions of one more request, (N's - SHORT's) / (N - SHORT),
# in which the connections' set-up (TLS handshakes: ~1 M instructions each) cancels out.
count() {
  local name=$1 pid=$2 kind=$3 url=$4 cookie=${5:-} args=(-c 64 -t 1)
  [ -z "${BROWSER:-}" ] || args+=("${BROWSER_HEADERS[@]}")
  [ -n "$cookie" ] && args+=(-H "Cookie: gatehouse_access=$cookie")
  [ "$kind" = h2 ] && args+=(-m 10) || args+=(--h1)
  taskset -c 1 h2load "${args[@]}" -n 2000 "$url" >/dev/null
  counted "$name-short" "$pid" "$SHORT" "${args[@]}" "$url"
  local short=$TOTAL
  counted "$name" "$pid" "$N" "${args[@]}" "$url"
  local per=$(((TOTAL - short) / (N - SHORT)))
  printf '%-26s %7d instructions per request  (%s)\n' "$name" "$per" "$FILE"
  eval "IR_${name//-/_}=$per FILE_${name//-/_}=$FILE"
}

# Under valgrind on CPU 0 (one CPU: the gateway picks its single-threaded runtime, as in the
# load benchmark), h2load on CPU 1.
under_callgrind() {
  local tag=$1; shift
  (cd "$OUT" && exec taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.$tag.%p" "$@") \
    2>>"$WORK/$tag.log" & PIDS+=($!); PID=$!
}

# count_kinds TAG PID PLAIN TLS [COOKIE]: each of KINDS against the proxy PID listening on
# 127.0.0.1 ports PLAIN and TLS, then stops it.
count_kinds() {
  local tag=$1 pid=$2 plain=$3 tls=$4 cookie=${5:-}
  for k in $KINDS; do
    case $k in
      h2) count "$tag-h2" "$pid" h2 "https://127.0.0.1:$tls/" "$cookie" ;;
      h1tls) count "$tag-h1tls" "$pid" h1 "https://127.0.0.1:$tls/" "$cookie" ;;
      h1) count "$tag-h1" "$pid" h1 "http://127.0.0.1:$plain/" "$cookie" ;;
      *) echo "unknown kind $k (h2, h1tls, h1)" >&2; exit 1 ;;
    esac
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

measure_gateway() {
  local tag=$1 bin=$2 plain tls
  plain=$(free_port); tls=$(free_port)
  bench_tls_gateway_yaml "$plain" "$tls" "$UP" > "$WORK/$tag.yaml"
  under_callgrind "$tag" "$bin" run --config "$WORK/$tag.yaml"
  local pid=$PID
  wait_port "$plain"; wait_port "$tls"
  local cookie
  cookie=$(curl -s -o /dev/null -c - -H 'content-type: application/json' \
    -d '{"username":"alice","password":"alice-demo-password"}' \
    "http://127.0.0.1:$plain/.gatehouse/login" | awk '$6=="gatehouse_access"{print $7}')
  [ -n "$cookie" ] || { echo "could not log in to $tag" >&2; cat "$WORK/$tag.log" >&2; exit 1; }
  count_kinds "$tag" "$pid" "$plain" "$tls" "$cookie"
}

measure_bare() {
  local plain tls
  plain=$(free_port); tls=$(free_port)
  under_callgrind bare "$PWD/$BIN/examples/bare-proxy" "127.0.0.1:$plain" "127.0.0.1:$UP" \
    "127.0.0.1:$tls" "$WORK/tls.crt" "$WORK/tls.key"
  wait_port "$plain"; wait_port "$tls"
  count_kinds bare "$PID" "$plain" "$tls"
}

# nginx as the load benchmark runs it (one worker, no authentication, the same requests as
# bare hyper gets), under callgrind too: its OpenSSL counts like Gatehouse's aws-lc.
measure_nginx() {
  local plain tls
  plain=$(free_port); tls=$(free_port)
  bench_nginx_conf "$UP" "$plain" "$tls"
  under_callgrind nginx nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
  wait_port "$plain"; wait_port "$tls"
  count_kinds nginx "$PID" "$plain" "$tls"
}

measure_gateway gatehouse "$PWD/$BIN/gatehouse"
[ -z "${BASELINE:-}" ] || measure_gateway baseline "$(realpath "$BASELINE")"
measure_bare
[ -z "${NGINX:-}" ] || measure_nginx

echo
for k in $KINDS; do
  g=IR_gatehouse_$k; b=IR_bare_$k; base=IR_baseline_$k
  line=$(printf '%-6s gatehouse / bare hyper %.3f' "$k" "$(echo "${!g} / ${!b}" | bc -l)")
  [ -n "${!base:-}" ] && line+=$(printf ',  gatehouse / baseline %.3f' "$(echo "${!g} / ${!base}" | bc -l)")
  ngx=IR_nginx_$k
  [ -n "${!ngx:-}" ] && line+=$(printf ',  gatehouse / nginx %.3f,  bare hyper / nginx %.3f' \
    "$(echo "${!g} / ${!ngx}" | bc -l)" "$(echo "${!b} / ${!ngx}" | bc -l)")
  echo "$line"
done

# The functions whose own instructions differ most between the gateway and bare hyper.
if [ "$TOP" -gt 0 ]; then
  for k in $KINDS; do
    g=FILE_gatehouse_$k; b=FILE_bare_$k
    echo; echo "$k: instructions per request in the function itself, gatehouse - bare hyper"
    for f in "${!g}" "${!b}"; do
      callgrind_annotate --threshold=100 "$f" 2>/dev/null \
        | sed -e 's/::h[0-9a-f]\{16\}//g' -e 's/ \[[^]]*\]$//' -e 's/^\(\s*[0-9,]*\) ([^)]*)\s*/\1 /' \
        | awk 'NF>=2 && $1 ~ /^[0-9,]+$/ {v=$1; gsub(",","",v); $1=""; print v "\t" substr($0,2)}' \
        | grep -v -e 'PROGRAM TOTALS' -e '(below main)' -e '::main$' -e '???:main$' -e 'lang_start' \
          -e 'CoreGuard::block_on$' -e 'enter_runtime$' -e '__rust_begin_short_backtrace$' \
          -e 'libc_start' -e '???:0x0' > "$f.self"
    done
    awk -F'\t' -v n="$N" 'FNR==NR{g[$2]+=$1; next} {b[$2]+=$1} END{for (k in g) d[k]=g[k]-b[k]; for (k in b) if (!(k in g)) d[k]=-b[k]; for (k in d) printf "%8d\t%s\n", d[k]/n, k}' \
      "${!g}.self" "${!b}.self" | sort -n -r | awk -F'\t' -v top="$TOP" '$1 != 0 && n++ < top' | cut -c1-150
  done
fi
echo; echo "callgrind files: $OUT"
