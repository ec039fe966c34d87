# syntax=docker/dockerfile:1
# One small image that runs any role: `docker run switchyard api|worker|scheduler|migrate|…`.
# Build stage: the release binary; the cargo registry and target dir live in build caches.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard \
    && cp target/release/switchyard /usr/local/bin/switchyard \
    && strip /usr/local/bin/switchyard

# Run stage: Debian slim with CA certificates (PIDKey, Sikka and webhook URLs are https),
# an unprivileged user, its data dir (embedded mode) and /secrets (a volume the roles of a
# fleet share for the master key file) owned by it: a named volume takes that ownership.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home switchyard \
    && mkdir -p /secrets && chown switchyard /secrets
COPY --from=build /usr/local/bin/switchyard /usr/local/bin/switchyard
USER switchyard
WORKDIR /data
ENV SWITCHYARD_DATA_DIR=/data \
    SWITCHYARD_LOG_FORMAT=json \
    SWITCHYARD_LISTEN=0.0.0.0:8080 \
    SWITCHYARD_METRICS_LISTEN=0.0.0.0:9464
EXPOSE 8080 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["switchyard", "probe", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["switchyard"]
CMD ["dev"]
