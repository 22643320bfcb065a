# Gatehouse and the bundled example app.
#   docker build -t gatehouse .
#   docker run -p 8080:8080 -v $PWD/gateway.yaml:/etc/gatehouse/gateway.yaml gatehouse
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
USER gatehouse
EXPOSE 8080 9090
ENV GATEHOUSE_CONFIG=/etc/gatehouse/gateway.yaml
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["run"]
