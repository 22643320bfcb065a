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
