#!/usr/bin/env bash
# Load benchmark: Gatehouse (authenticated: cookie, EdDSA token, revocation check, identity
# headers) against nginx proxy_pass (no authentication) and a bare hyper proxy of ours (no
# authentication), side by side in one run, interleaved over several rounds.
#
# Each proxy is pinned to CPU 0; wrk (64 keep-alive connections) and the upstream share CPU 1.
# Prints requests/s, p50 and p99 per target, the proxy's CPU use (from /proc/PID/stat) and so
# its requests per CPU-second ("per core": a proxy that does not saturate its core is not
# penalised for it), and the ratios to nginx and to the bare proxy. Each Gatehouse run is
# followed at once by the same build under a storm of 50 logins/s (argon2 on its own
# low-priority threads; the storm runs over keep-alive connections from
# examples/login-storm.rs), to compare its p99 with the idle one next to it and to show how
# many of those logins actually succeeded.
#
#   benches/load.sh                  # 3 rounds x 10 s per target
#   ROUNDS=5 DURATION=20 benches/load.sh
#   benches/load.sh --smoke          # 1 round x 1 s: checks that everything runs (CI)
#   BASELINE=/tmp/old/gatehouse benches/load.sh
#                                    # also runs an older build, interleaved, for before/after
#                                    # (idle and under the login storm)
#   HYPER_PATH=1 benches/load.sh     # also Gatehouse with the express lane off
#                                    # (GATEHOUSE_EXPRESS_LANE=0: hyper's path only), idle
#                                    # and under the storm
#   PAIRS=12 benches/load.sh         # then nginx and Gatehouse alternated 12 times, PAIR_DURATION
#                                    # (5) s each, to compare their p99 pair by pair
#   BEARER=1 benches/load.sh         # also Gatehouse with the same token as an API client sends
#                                    # it (Authorization: Bearer), and with HYPER_PATH=1 the
#                                    # lane-off build too
#   OIDC=1 benches/load.sh           # also Gatehouse with the cookie of a session that came
#                                    # from an identity provider (tests/oidc's oidc-provider,
#                                    # needs node and `npm ci` there): the hot path must not
#                                    # tell it from a password session
#   TLS=1 benches/load.sh            # also HTTPS (TLS 1.3 on both): nginx (ssl, http2) and
#                                    # Gatehouse's TLS listener, HTTP/1.1 (wrk) and HTTP/2
#                                    # (h2load, 10 streams per connection), a new connection per
#                                    # request (wrk, Connection: close; wrk resumes its session),
#                                    # full handshakes (openssl s_time -new) and resumptions
#                                    # (openssl s_time -reuse); the bare hyper proxy serves
#                                    # HTTPS/1.1 and HTTP/2 too (Gatehouse's rustls settings)
#   KINDS=1 benches/load.sh          # also the request kinds the lane does not take, each next
#                                    # to a bare hyper proxy doing the same framing: POST with a
#                                    # 1 KiB body, a public path, a refusal (401)
#   FLOOR=1 benches/load.sh          # also examples/floor-proxy: tokio without hyper, bare and
#                                    # with Gatehouse's per-request auth work (what a
#                                    # hand-written HTTP/1 codec could reach; not a product)
#
# Needs: wrk, nginx, taskset (util-linux), curl. Talks to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
PAIRS=${PAIRS:-0}
PAIR_DURATION=${PAIR_DURATION:-5}
if [ "${1:-}" = "--smoke" ]; then ROUNDS=1; DURATION=1; PAIRS=1; PAIR_DURATION=1; fi

for tool in wrk nginx taskset curl; do
  command -v "$tool" >/dev/null || { echo "load.sh needs $tool (apt-get install wrk nginx util-linux curl)" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "load.sh needs 2 CPUs" >&2; exit 1; }

cargo build --release --quiet --bin gatehouse --example bench-upstream --example bare-proxy --example login-storm \
  ${FLOOR:+--example floor-proxy}
# shellcheck source=benches/common.sh
. benches/common.sh

UP=$(free_port); NGINX=$(free_port); BARE=$(free_port); GH=$(free_port); BASE=$(free_port)
FLOOR_BARE=$(free_port); FLOOR_AUTH=$(free_port); LANE_PORT=$(free_port); IDP=$(free_port)
NGINX_TLS=$(free_port); GH_TLS=$(free_port); BARE_TLS=$(free_port); BARE_TLS_ARGS=()
if [ -n "${TLS:-}" ]; then
  for tool in h2load openssl; do
    command -v "$tool" >/dev/null || { echo "TLS=1 needs $tool (apt-get install nghttp2-client openssl)" >&2; exit 1; }
  done
  # One self-signed P-256 certificate for both servers.
  bench_tls_cert
  # The bare proxy serves HTTPS too, with Gatehouse's rustls settings: hyper alone over TLS.
  BARE_TLS_ARGS=("127.0.0.1:$BARE_TLS" "$WORK/tls.crt" "$WORK/tls.key")
fi

taskset -c 1 "$BIN/examples/bench-upstream" "127.0.0.1:$UP" & PIDS+=($!)
wait_port "$UP"

bench_nginx_conf "$UP" "$NGINX" ${TLS:+"$NGINX_TLS"}
# taskset execs the program, so $! is the proxy's own PID (CPU accounting reads it).
taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" & PIDS+=($!); PID_nginx=$!
taskset -c 0 "$BIN/examples/bare-proxy" "127.0.0.1:$BARE" "127.0.0.1:$UP" ${BARE_TLS_ARGS[@]+"${BARE_TLS_ARGS[@]}"} \
  & PIDS+=($!); PID_bare=$!

cat > "$WORK/gateway.yaml" <<EOF
server:
  listen: "127.0.0.1:$GH"
$(bench_identity_yaml)
login:
  max_failures: 1000000
routes:
  - name: app
    upstream: "http://127.0.0.1:$UP"
    public: ["/public/"]
logging:
  level: warn
EOF
if [ -n "${TLS:-}" ]; then
  sed -i "s|^  listen: \"127.0.0.1:$GH\"|&\n  tls:\n    listen: \"127.0.0.1:$GH_TLS\"\n    cert: \"$WORK/tls.crt\"\n    key: \"$WORK/tls.key\"|" "$WORK/gateway.yaml"
fi
if [ -n "${OIDC:-}" ]; then
  command -v node >/dev/null && [ -d tests/oidc/node_modules/oidc-provider ] \
    || { echo "OIDC=1 needs node and 'npm ci' in tests/oidc" >&2; exit 1; }
  IDP_CONFIG="{\"port\":$IDP,\"clients\":[{\"client_id\":\"bench\",\"client_secret\":\"bench-secret-0123456789\",\"redirect_uris\":[\"http://127.0.0.1:$GH/.gatehouse/oidc/bench/callback\"]}],\"accounts\":{\"erin\":{\"email\":\"erin@example.com\",\"email_verified\":true,\"groups\":[\"staff\"]}}}"
  (cd tests/oidc && exec taskset -c 1 node provider.mjs "$IDP_CONFIG" > "$WORK/idp.log" 2>&1) & PIDS+=($!)
  wait_port "$IDP"
  sed -i "s|^  listen: \"127.0.0.1:$GH\"|&\n  public_url: \"http://127.0.0.1:$GH\"|" "$WORK/gateway.yaml"
  cat >> "$WORK/gateway.yaml" <<EOF
oidc:
  providers:
    - id: bench
      issuer: "http://127.0.0.1:$IDP"
      client_id: bench
      client_secret: "bench-secret-0123456789"
      roles_claim: groups
EOF
fi
RUST_LOG=warn taskset -c 0 "$BIN/gatehouse" run --config "$WORK/gateway.yaml" & PIDS+=($!); PID_gatehouse=$!
wait_port "$NGINX"; wait_port "$BARE"; wait_port "$GH"
[ -z "${TLS:-}" ] || { wait_port "$NGINX_TLS"; wait_port "$GH_TLS"; wait_port "$BARE_TLS"; }
if [ -n "${BASELINE:-}" ]; then
  sed -e "s/127.0.0.1:$GH/127.0.0.1:$BASE/" -e "/^  tls:$/,+3d" "$WORK/gateway.yaml" > "$WORK/baseline.yaml"
  RUST_LOG=warn taskset -c 0 "$BASELINE" run --config "$WORK/baseline.yaml" & PIDS+=($!); PID_baseline=$!
  wait_port "$BASE"
fi
if [ -n "${HYPER_PATH:-}" ]; then
  sed -e "s/127.0.0.1:$GH/127.0.0.1:$LANE_PORT/" -e "/^  tls:$/,+3d" "$WORK/gateway.yaml" > "$WORK/lane.yaml"
  GATEHOUSE_EXPRESS_LANE=0 RUST_LOG=warn taskset -c 0 "$BIN/gatehouse" run --config "$WORK/lane.yaml" \
    & PIDS+=($!); PID_lane=$!
  wait_port "$LANE_PORT"
fi
if [ -n "${FLOOR:-}" ]; then
  taskset -c 0 "$BIN/examples/floor-proxy" "127.0.0.1:$FLOOR_BARE" "127.0.0.1:$UP" & PIDS+=($!); PID_floor=$!
  taskset -c 0 "$BIN/examples/floor-proxy" "127.0.0.1:$FLOOR_AUTH" "127.0.0.1:$UP" "$WORK/gateway.yaml" \
    & PIDS+=($!); PID_floorauth=$!
  wait_port "$FLOOR_BARE"; wait_port "$FLOOR_AUTH"
fi

COOKIE=$(curl -s -o /dev/null -c - -H 'content-type: application/json' \
  -d '{"username":"alice","password":"alice-demo-password"}' \
  "http://127.0.0.1:$GH/.gatehouse/login" | awk '$6=="gatehouse_access"{print $7}')
[ -n "$COOKIE" ] || { echo "could not log in to Gatehouse" >&2; exit 1; }
# Authenticated requests really are authenticated (and unauthenticated ones are refused).
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: gatehouse_access=$COOKIE" "http://127.0.0.1:$GH/")" = 200 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GH/")" = 401 ]
if [ -n "${TLS:-}" ]; then
  [ "$(curl -sk -o /dev/null -w '%{http_code}' -H "Cookie: gatehouse_access=$COOKIE" "https://127.0.0.1:$GH_TLS/")" = 200 ]
  [ "$(curl -sk --http2 -o /dev/null -w '%{http_version} %{http_code}' -H "Cookie: gatehouse_access=$COOKIE" "https://127.0.0.1:$GH_TLS/")" = "2 200" ]
  [ "$(curl -sk --http2 -o /dev/null -w '%{http_version} %{http_code}' "https://127.0.0.1:$NGINX_TLS/")" = "2 200" ]
  [ "$(curl -sk --http2 -o /dev/null -w '%{http_version} %{http_code}' "https://127.0.0.1:$BARE_TLS/")" = "2 200" ]
  [ "$(curl -sk --http1.1 -o /dev/null -w '%{http_version} %{http_code}' "https://127.0.0.1:$BARE_TLS/")" = "1.1 200" ]
fi
if [ -n "${KINDS:-}" ]; then
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GH/public/x")" = 200 ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' -d @<(head -c 1024 /dev/zero | tr '\0' a) -H "Cookie: gatehouse_access=$COOKIE" "http://127.0.0.1:$GH/")" = 200 ]
  head -c 1024 /dev/zero | tr '\0' a > "$WORK/body"
  cat > "$WORK/post.lua" <<EOF
local f = io.open("$WORK/body", "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
fi
# A session from the identity provider: the browser's way through it, with curl.
if [ -n "${OIDC:-}" ]; then
  JAR="$WORK/oidc.jar"
  URL=$(curl -s -o /dev/null -c "$JAR" -b "$JAR" -w '%{redirect_url}' \
    "http://127.0.0.1:$GH/.gatehouse/oidc/bench/start?rd=/")
  for _ in $(seq 1 12); do
    case "$URL" in "http://127.0.0.1:$GH/"*) break ;; esac
    PAGE=$(curl -s -c "$JAR" -b "$JAR" -w '\n%{http_code} %{redirect_url}' "$URL")
    STATUS=$(echo "$PAGE" | tail -1)
    if [ "${STATUS%% *}" = 200 ]; then
      ACTION=$(echo "$PAGE" | grep -o 'action="[^"]*"' | head -1 | sed 's/action="//; s/"$//')
      URL=$(curl -s -o /dev/null -c "$JAR" -b "$JAR" -w '%{redirect_url}' \
        -d prompt=login -d login=erin -d password=x "$ACTION")
    else
      URL=${STATUS#* }
    fi
  done
  curl -s -o /dev/null -c "$JAR" -b "$JAR" "$URL"
  OIDC_COOKIE=$(awk '$6=="gatehouse_access"{print $7}' "$JAR")
  [ -n "$OIDC_COOKIE" ] || { echo "could not sign in through the identity provider" >&2; exit 1; }
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: gatehouse_access=$OIDC_COOKIE" "http://127.0.0.1:$GH/")" = 200 ]
fi
# Tokens verify without a store lookup, so the same cookie authenticates on the baseline.
if [ -n "${BASELINE:-}" ]; then
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: gatehouse_access=$COOKIE" "http://127.0.0.1:$BASE/")" = 200 ]
fi
if [ -n "${HYPER_PATH:-}" ]; then
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: gatehouse_access=$COOKIE" "http://127.0.0.1:$LANE_PORT/")" = 200 ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$LANE_PORT/")" = 401 ]
fi
if [ -n "${BEARER:-}" ]; then
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $COOKIE" "http://127.0.0.1:$GH/")" = 200 ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer x$COOKIE" "http://127.0.0.1:$GH/")" = 401 ]
fi
if [ -n "${FLOOR:-}" ]; then
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: gatehouse_access=$COOKIE" "http://127.0.0.1:$FLOOR_AUTH/")" = 200 ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FLOOR_AUTH/")" = 401 ]
fi

# run NAME PID URL [extra wrk args...] -> appends "NAME rps p50_ms p99_ms cpu_fraction
# kernel_fraction" to $WORK/results; cpu_fraction is the proxy's user+system CPU time over the
# run's wall time, kernel_fraction the system part of that CPU time.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$1/stat"; }
# measured PID CMD...: runs CMD (output in $OUT) and sets $CPU (the proxy's CPU time over the
# wall time) and $KERNEL (the system part of that CPU time).
measured() {
  local pid=$1; shift
  local before after start end sys_before sys_after
  before=$(cpu_ticks "$pid"); sys_before=$(sys_ticks "$pid"); start=$(date +%s.%N)
  OUT=$("$@" 2>&1)
  after=$(cpu_ticks "$pid"); sys_after=$(sys_ticks "$pid"); end=$(date +%s.%N)
  CPU=$(awk -v a="$before" -v b="$after" -v t="$CLK_TCK" -v s="$start" -v e="$end" \
    'BEGIN{printf "%.3f", (b - a) / t / (e - s)}')
  KERNEL=$(awk -v a="$before" -v b="$after" -v sa="$sys_before" -v sb="$sys_after" \
    'BEGIN{printf "%.3f", (b > a) ? (sb - sa) / (b - a) : 0}')
}
run() {
  local name=$1 pid=$2 url=$3; shift 3
  measured "$pid" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${RUN_DURATION:-$DURATION}s" --latency "$@" "$url"
  local rps p50 p99
  rps=$(echo "$OUT" | awk '/^Requests\/sec:/{print $2}')
  p50=$(echo "$OUT" | awk '$1=="50%"{print $2}')
  p99=$(echo "$OUT" | awk '$1=="99%"{print $2}')
  echo "$name $rps $(to_ms "$p50") $(to_ms "$p99") $CPU $KERNEL" >> "$WORK/results"
}
# run_h2 NAME PID URL [extra h2load args...]: HTTP/2 over TLS, 64 connections x 10 streams;
# p50/p99 from h2load's per-request log.
run_h2() {
  local name=$1 pid=$2 url=$3; shift 3
  measured "$pid" taskset -c 1 h2load -c"$CONNECTIONS" -m10 -t1 -D"${RUN_DURATION:-$DURATION}" \
    --log-file="$WORK/h2.log" "$@" "$url"
  local rps p50 p99
  rps=$(echo "$OUT" | awk '/^finished in/{gsub(",","",$4); print $4}')
  p50=$(awk '$2==200{print $3}' "$WORK/h2.log" | sort -n | awk '{a[NR]=$1} END{printf "%.3f", a[int(NR*0.5)+1]/1000}')
  p99=$(awk '$2==200{print $3}' "$WORK/h2.log" | sort -n | awk '{a[NR]=$1} END{printf "%.3f", a[int(NR*0.99)+1]/1000}')
  echo "$name $rps $p50 $p99 $CPU $KERNEL" >> "$WORK/results"
}
# run_s_time NAME PID HOST:PORT -new|-reuse [-www PATH]: TLS connections per second from one
# client (openssl s_time): -new is a full handshake each time (no request), -reuse a
# resumption (with -www PATH: a TLS 1.3 client has its ticket once it has read an answer);
# p50/p99 are not measured (0).
run_s_time() {
  local name=$1 pid=$2 addr=$3; shift 3
  measured "$pid" taskset -c 1 openssl s_time -connect "$addr" "$@" -time "${RUN_DURATION:-$DURATION}"
  local n
  n=$(echo "$OUT" | awk '/connections in [0-9.]+ real seconds/{for(i=1;i<=NF;i++) if($i=="connections") print $(i-1)}' | tail -1)
  echo "$name $(awk -v n="${n:-0}" -v d="${RUN_DURATION:-$DURATION}" 'BEGIN{printf "%.0f", n/d}') 0 0 $CPU $KERNEL" >> "$WORK/results"
}
to_ms() {
  case "$1" in
    *us) awk -v v="${1%us}" 'BEGIN{printf "%.3f", v/1000}' ;;
    *ms) awk -v v="${1%ms}" 'BEGIN{printf "%.3f", v}' ;;
    *s) awk -v v="${1%s}" 'BEGIN{printf "%.3f", v*1000}' ;;
    *) echo "nan" ;;
  esac
}

: > "$WORK/results"
# Each idle run of a Gatehouse build is followed at once by the same build under a storm of 50
# logins/s, so every storm p99 has an idle p99 measured next to it (p99 on this machine drifts
# by 2x over minutes, more than the storm's effect). storm() waits until the last login of the
# storm is answered, so no hashing backlog spills into the next run.
storm() { # name pid port file [url]: the logins go to the plain port, the measured load to
  # url (default: the same plain port)
  taskset -c 1 "$BIN/examples/login-storm" "127.0.0.1:$3" 50 "$DURATION" alice alice-demo-password \
    > "$4" & STORM=$!
  run "$1" "$2" "${5:-http://127.0.0.1:$3/}" -H "Cookie: gatehouse_access=$COOKIE"
  wait "$STORM"
}
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  run nginx "$PID_nginx" "http://127.0.0.1:$NGINX/"
  run bare-hyper "$PID_bare" "http://127.0.0.1:$BARE/"
  run gatehouse "$PID_gatehouse" "http://127.0.0.1:$GH/" -H "Cookie: gatehouse_access=$COOKIE"
  storm gatehouse+logins "$PID_gatehouse" "$GH" "$WORK/storm.$round"
  if [ -n "${BASELINE:-}" ]; then
    run baseline "$PID_baseline" "http://127.0.0.1:$BASE/" -H "Cookie: gatehouse_access=$COOKIE"
    storm baseline+logins "$PID_baseline" "$BASE" "$WORK/basestorm.$round"
  fi
  if [ -n "${HYPER_PATH:-}" ]; then
    run hyper-path "$PID_lane" "http://127.0.0.1:$LANE_PORT/" -H "Cookie: gatehouse_access=$COOKIE"
    storm hyper-path+logins "$PID_lane" "$LANE_PORT" "$WORK/lanestorm.$round"
  fi
  if [ -n "${BEARER:-}" ]; then
    run gatehouse/bearer "$PID_gatehouse" "http://127.0.0.1:$GH/" -H "Authorization: Bearer $COOKIE"
    if [ -n "${HYPER_PATH:-}" ]; then
      run hyper-path/bearer "$PID_lane" "http://127.0.0.1:$LANE_PORT/" -H "Authorization: Bearer $COOKIE"
    fi
  fi
  if [ -n "${TLS:-}" ]; then
    run nginx/tls-h1 "$PID_nginx" "https://127.0.0.1:$NGINX_TLS/"
    run bare-hyper/tls-h1 "$PID_bare" "https://127.0.0.1:$BARE_TLS/"
    run gatehouse/tls-h1 "$PID_gatehouse" "https://127.0.0.1:$GH_TLS/" -H "Cookie: gatehouse_access=$COOKIE"
    storm gatehouse/tls-h1+logins "$PID_gatehouse" "$GH" "$WORK/tlsstorm.$round" "https://127.0.0.1:$GH_TLS/"
    run_h2 nginx/h2 "$PID_nginx" "https://127.0.0.1:$NGINX_TLS/"
    run_h2 bare-hyper/h2 "$PID_bare" "https://127.0.0.1:$BARE_TLS/"
    run_h2 gatehouse/h2 "$PID_gatehouse" "https://127.0.0.1:$GH_TLS/" -H "cookie: gatehouse_access=$COOKIE"
    run nginx/conn "$PID_nginx" "https://127.0.0.1:$NGINX_TLS/" -H "Connection: close"
    run gatehouse/conn "$PID_gatehouse" "https://127.0.0.1:$GH_TLS/" -H "Connection: close" -H "Cookie: gatehouse_access=$COOKIE"
    run_s_time nginx/full "$PID_nginx" "127.0.0.1:$NGINX_TLS" -new
    run_s_time gatehouse/full "$PID_gatehouse" "127.0.0.1:$GH_TLS" -new
    run_s_time nginx/resume "$PID_nginx" "127.0.0.1:$NGINX_TLS" -reuse -www /healthz
    run_s_time gatehouse/resume "$PID_gatehouse" "127.0.0.1:$GH_TLS" -reuse -www /.gatehouse/healthz
  fi
  if [ -n "${KINDS:-}" ]; then
    run bare-hyper/post "$PID_bare" "http://127.0.0.1:$BARE/" -s "$WORK/post.lua"
    run gatehouse/post "$PID_gatehouse" "http://127.0.0.1:$GH/" -s "$WORK/post.lua" -H "Cookie: gatehouse_access=$COOKIE"
    run bare-hyper/public "$PID_bare" "http://127.0.0.1:$BARE/public/x"
    run gatehouse/public "$PID_gatehouse" "http://127.0.0.1:$GH/public/x"
    run gatehouse/refusal "$PID_gatehouse" "http://127.0.0.1:$GH/"
  fi
  if [ -n "${OIDC:-}" ]; then
    run gatehouse/oidc "$PID_gatehouse" "http://127.0.0.1:$GH/" -H "Cookie: gatehouse_access=$OIDC_COOKIE"
  fi
  if [ -n "${FLOOR:-}" ]; then
    run floor "$PID_floor" "http://127.0.0.1:$FLOOR_BARE/"
    run floor+auth "$PID_floorauth" "http://127.0.0.1:$FLOOR_AUTH/" -H "Cookie: gatehouse_access=$COOKIE"
  fi
done
# p99 moves by 1-2 ms from round to round on a shared machine: PAIRS alternates nginx and
# Gatehouse back to back (which goes first alternates too), so each Gatehouse p99 has an
# nginx p99 measured next to it.
for pair in $(seq 1 "$PAIRS"); do
  [ "$pair" = 1 ] && echo "pairs: nginx and Gatehouse alternated $PAIRS times" >&2
  if [ $((pair % 2)) = 1 ]; then
    RUN_DURATION=$PAIR_DURATION run nginx/pair "$PID_nginx" "http://127.0.0.1:$NGINX/"
    RUN_DURATION=$PAIR_DURATION run gatehouse/pair "$PID_gatehouse" "http://127.0.0.1:$GH/" -H "Cookie: gatehouse_access=$COOKIE"
  else
    RUN_DURATION=$PAIR_DURATION run gatehouse/pair "$PID_gatehouse" "http://127.0.0.1:$GH/" -H "Cookie: gatehouse_access=$COOKIE"
    RUN_DURATION=$PAIR_DURATION run nginx/pair "$PID_nginx" "http://127.0.0.1:$NGINX/"
  fi
done
echo
echo "median of $ROUNDS rounds, ${DURATION}s each, $CONNECTIONS connections, each proxy pinned to 1 core"
echo "per core = requests per CPU-second of the proxy process (req/s divided by its CPU use)"
echo "kernel = share of that CPU time spent in the kernel (TCP, epoll)"
echo "target              req/s   p50 ms   p99 ms   CPU kernel   per core  per core vs nginx  vs bare hyper"
median() { sort -n | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
stat() { awk -v n="$1" -v c="$2" '$1==n{print $c}' "$WORK/results" | median; }
# Per-core throughput per round, then the median of those.
per_core() { awk -v n="$1" '$1==n && $5>0 {print $2/$5}' "$WORK/results" | median; }
NGINX_PC=$(per_core nginx); BARE_PC=$(per_core bare-hyper)
NAMES="nginx bare-hyper gatehouse gatehouse+logins"
[ -z "${BASELINE:-}" ] || NAMES="nginx bare-hyper baseline gatehouse baseline+logins gatehouse+logins"
[ -z "${HYPER_PATH:-}" ] || NAMES="$NAMES hyper-path hyper-path+logins"
[ -z "${BEARER:-}" ] || NAMES="$NAMES gatehouse/bearer"
[ -z "${BEARER:-}" ] || [ -z "${HYPER_PATH:-}" ] || NAMES="$NAMES hyper-path/bearer"
[ -z "${TLS:-}" ] || NAMES="$NAMES nginx/tls-h1 bare-hyper/tls-h1 gatehouse/tls-h1 gatehouse/tls-h1+logins nginx/h2 bare-hyper/h2 gatehouse/h2 nginx/conn gatehouse/conn nginx/full gatehouse/full nginx/resume gatehouse/resume"
[ -z "${KINDS:-}" ] || NAMES="$NAMES bare-hyper/post gatehouse/post bare-hyper/public gatehouse/public gatehouse/refusal"
[ -z "${OIDC:-}" ] || NAMES="$NAMES gatehouse/oidc"
[ -z "${FLOOR:-}" ] || NAMES="$NAMES floor floor+auth"
for name in $NAMES; do
  rps=$(stat "$name" 2); p50=$(stat "$name" 3); p99=$(stat "$name" 4); cpu=$(stat "$name" 5)
  kernel=$(stat "$name" 6); pc=$(per_core "$name")
  awk -v n="$name" -v r="$rps" -v a="$p50" -v b="$p99" -v c="$cpu" -v k="$kernel" -v pc="$pc" -v ng="$NGINX_PC" -v bh="$BARE_PC" \
    'BEGIN{printf "%-16s %8.0f %8.3f %8.3f %4.0f%% %5.0f%% %10.0f %17.2fx %13.2fx\n", n, r, a, b, c*100, k*100, pc, pc/ng, pc/bh}'
done
# p99 ratios of runs measured next to each other: storm over idle per round, Gatehouse over
# nginx per pair.
pair_ratios() { # first-name second-name: second p99 over first, pair by pair
  paste <(awk -v n="$1" '$1==n{print $4}' "$WORK/results") <(awk -v n="$2" '$1==n{print $4}' "$WORK/results") \
    | awk '$1>0{printf "%.2f\n", $2/$1}'
}
IDLE_P99=$(stat gatehouse 4); STORM_P99=$(stat gatehouse+logins 4)
RATIOS=$(pair_ratios gatehouse gatehouse+logins)
awk -v i="$IDLE_P99" -v s="$STORM_P99" -v m="$(echo "$RATIOS" | median)" -v r="$(echo $RATIOS)" \
  'BEGIN{printf "login storm: p99 %.3f ms vs idle %.3f ms (%.2fx; goal <= 2x); per round %s, median %.2fx\n", s, i, s/i, r, m}'
for round in $(seq 1 "$ROUNDS"); do echo "  storm round $round: $(cat "$WORK/storm.$round")"; done
if [ "$PAIRS" -gt 0 ]; then
  RATIOS=$(pair_ratios nginx/pair gatehouse/pair)
  echo "p99 pair by pair ($PAIRS pairs of ${PAIR_DURATION}s): Gatehouse/nginx $(echo $RATIOS)"
  awk -v n="$(stat nginx/pair 4)" -v g="$(stat gatehouse/pair 4)" -v m="$(echo "$RATIOS" | median)" \
    -v w="$(echo "$RATIOS" | awk '$1<=1' | wc -l)" -v k="$PAIRS" -v np="$(per_core nginx/pair)" -v gp="$(per_core gatehouse/pair)" \
    'BEGIN{printf "  median p99 %.3f ms vs nginx %.3f ms; median ratio %.2fx; Gatehouse no worse in %d of %d; per core %.2fx\n", g, n, m, w, k, gp/np}'
fi
# Same-kind ratios: each target over its like (per core; one client's handshakes per second too).
like() { # name base-name label
  awk -v a="$(per_core "$1")" -v b="$(per_core "$2")" -v l="$3" 'BEGIN{ if (b>0) printf "  %-44s %.2fx\n", l, a/b }'
}
if [ -n "${TLS:-}" ] || [ -n "${KINDS:-}" ]; then echo "per core, each next to its like:"; fi
if [ -n "${TLS:-}" ]; then
  like gatehouse/tls-h1 nginx/tls-h1 "HTTPS/1.1 GET, Gatehouse / nginx"
  awk -v i="$(stat gatehouse/tls-h1 4)" -v s="$(stat gatehouse/tls-h1+logins 4)" -v r="$(echo $(pair_ratios gatehouse/tls-h1 gatehouse/tls-h1+logins))" \
    'BEGIN{ if (i>0) printf "  %-44s %.2fx (p99 %.3f vs %.3f ms; per round %s)\n", "HTTPS/1.1 p99 during 50 logins/s / idle", s/i, s, i, r }'
  like gatehouse/h2 nginx/h2 "HTTP/2 GET, Gatehouse / nginx"
  # hyper alone over TLS (no authentication), next to nginx and to Gatehouse: how much of
  # each gap is hyper's, how much ours.
  like bare-hyper/tls-h1 nginx/tls-h1 "HTTPS/1.1 GET, bare hyper / nginx"
  like gatehouse/tls-h1 bare-hyper/tls-h1 "HTTPS/1.1 GET, Gatehouse / bare hyper"
  like bare-hyper/h2 nginx/h2 "HTTP/2 GET, bare hyper / nginx"
  like gatehouse/h2 bare-hyper/h2 "HTTP/2 GET, Gatehouse / bare hyper"
  like gatehouse/conn nginx/conn "a connection per request, Gatehouse / nginx"
  per_second() { # name base-name label: one client's rate is bound by the client, so both
    awk -v a="$(stat "$1" 2)" -v b="$(stat "$2" 2)" -v pa="$(per_core "$1")" -v pb="$(per_core "$2")" -v l="$3" \
      'BEGIN{ if (b>0 && pb>0) printf "  %-44s %.2fx (per second, one client: %.2fx)\n", l, pa/pb, a/b }'
  }
  per_second gatehouse/full nginx/full "full handshakes, Gatehouse / nginx"
  per_second gatehouse/resume nginx/resume "resumptions, Gatehouse / nginx"
fi
if [ -n "${KINDS:-}" ]; then
  like gatehouse/post bare-hyper/post "POST 1 KiB, Gatehouse / bare hyper"
  like gatehouse/public bare-hyper/public "public path, Gatehouse / bare hyper"
  like gatehouse/refusal bare-hyper "401 refusal, Gatehouse / bare hyper GET"
fi
if [ -n "${HYPER_PATH:-}" ]; then
  LANE_IDLE=$(stat hyper-path 4); LANE_STORM=$(stat hyper-path+logins 4)
  awk -v i="$LANE_IDLE" -v s="$LANE_STORM" -v r="$(echo $(pair_ratios hyper-path hyper-path+logins))" \
    'BEGIN{printf "hyper path (lane off) login storm: p99 %.3f ms vs idle %.3f ms (%.2fx); per round %s\n", s, i, s/i, r}'
fi
if [ -n "${BASELINE:-}" ]; then
  BASE_IDLE=$(stat baseline 4); BASE_STORM=$(stat baseline+logins 4)
  awk -v i="$BASE_IDLE" -v s="$BASE_STORM" -v r="$(echo $(pair_ratios baseline baseline+logins))" \
    'BEGIN{printf "baseline login storm: p99 %.3f ms vs idle %.3f ms (%.2fx); per round %s\n", s, i, s/i, r}'
  for round in $(seq 1 "$ROUNDS"); do echo "  baseline storm round $round: $(cat "$WORK/basestorm.$round")"; done
fi
