# Shared by the benchmark scripts (sourced, not run): a work directory and the processes to
# stop when the script exits, free loopback ports, waiting for a listener.
#
# A script may define `on_exit` for its own clean-up; it runs before the work directory goes.

BIN=target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if declare -F on_exit >/dev/null; then on_exit; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2; exit 1
}

# The sections every benchmark gateway shares, printed as YAML: EdDSA tokens from the demo key
# (an access token lives 1 h, longer than any run), plain-HTTP cookies, the user alice.
bench_identity_yaml() {
  cat <<YAML
tokens:
  algorithm: EdDSA
  signing_key: "$PWD/keys/demo-signing.pem"
  access_ttl: 1h
cookies:
  secure: false
users:
  - username: alice
    password_hash: "\$argon2id\$v=19\$m=19456,t=2,p=1\$aMsvpcdBj9/VlZHRnVgc4w\$2L336nOpRY5KVoyYdI5CsWbXOcev6vwRpDlrlZ4vSyo"
    email: alice@example.com
    roles: [admin, staff]
YAML
}

# A self-signed P-256 certificate for 127.0.0.1, as $WORK/tls.crt and $WORK/tls.key.
bench_tls_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
}

# bench_tls_gateway_yaml PLAIN TLS UPSTREAM: a whole gateway config listening on 127.0.0.1 ports
# PLAIN and TLS ($WORK/tls.crt), one route to 127.0.0.1:UPSTREAM, logging warnings only.
bench_tls_gateway_yaml() {
  cat <<YAML
server:
  listen: "127.0.0.1:$1"
  tls:
    listen: "127.0.0.1:$2"
    cert: "$WORK/tls.crt"
    key: "$WORK/tls.key"
$(bench_identity_yaml)
routes:
  - name: app
    upstream: "http://127.0.0.1:$3"
logging:
  level: warn
YAML
}

# bench_nginx_conf UPSTREAM PLAIN [TLS]: $WORK/nginx/nginx.conf, one nginx worker in the
# foreground (no master process) proxying 127.0.0.1:PLAIN, and with TLS 127.0.0.1:TLS (ssl,
# http2, $WORK/tls.crt), to 127.0.0.1:UPSTREAM over kept-alive HTTP/1.1, without an access log.
bench_nginx_conf() {
  local tls_block=""
  [ -z "${3:-}" ] || tls_block="  server {
    listen 127.0.0.1:$3 ssl http2;
    ssl_certificate $WORK/tls.crt;
    ssl_certificate_key $WORK/tls.key;
    # TLS 1.3, as Gatehouse speaks it: nginx before 1.23.4 (Debian 12 has 1.22) offers only
    # TLSv1-1.2 by default, and a TLS 1.2 resumption skips the key exchange that a TLS 1.3
    # one does. The same suite Gatehouse prefers (AES-128-GCM), chosen by the server.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    # nginx closes a keep-alive connection after 1000 requests by default: h2load does not
    # reconnect (its streams stall) and wrk would pay a new handshake. Gatehouse has no such
    # limit, so neither does nginx here.
    keepalive_requests 100000000;
    location = /healthz { return 200 \"ok\\n\"; }
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  # Idle upstream connections kept: at least the HTTP/2 target's 640 streams in flight, or
  # nginx opens and closes upstream connections all run long (~7% of requests at 128).
  upstream app { server 127.0.0.1:$1; keepalive 1024; }
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
$tls_block
}
NGINX
}
