# Gatehouse and the bundled example app.
#
#   docker build -t gatehouse .
#   mkdir -p gatehouse-data/keys
#   docker run --rm --user "$(id -u)" -v "$PWD/gatehouse-data:/data" gatehouse gen-key --out /data/keys/signing.pem
#   echo 'pick-a-password' | docker run --rm -i gatehouse hash-password     # paste it below
#   printf 'users:\n  - username: alice\n    password_hash: "PASTE"\n' > gatehouse-data/users.yaml
#   docker run --rm --user "$(id -u)" -p 8080:8080 \
#     -v "$PWD/gatehouse-data/keys:/etc/gatehouse/keys:ro" \
#     -v "$PWD/gatehouse-data/users.yaml:/etc/gatehouse/users.yaml:ro" \
#     -e GATEHOUSE_UPSTREAM=http://host.docker.internal:3000 --add-host host.docker.internal:host-gateway \
#     gatehouse
#
# Then open http://localhost:8080/. The default config is examples/docker/gateway.yaml (at
# /etc/gatehouse/gateway.yaml); mount your own there for more. `--user "$(id -u)"` lets the
# gateway read the key that gen-key wrote readable only by you.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gatehouse --example legacy-app

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin gatehouse
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
COPY --from=build /src/target/release/examples/legacy-app /usr/local/bin/legacy-app
COPY examples/docker/gateway.yaml /etc/gatehouse/gateway.yaml
USER gatehouse
EXPOSE 8080 9090
ENV GATEHOUSE_CONFIG=/etc/gatehouse/gateway.yaml
HEALTHCHECK --interval=30s --timeout=6s --retries=3 CMD ["/usr/local/bin/gatehouse", "health"]
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["run"]
