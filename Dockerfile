# nsi-live: one image for Railway or any container host.
#   docker build -t nsi-live .
#   docker run -p 8080:8080 -v nsi-data:/app/data nsi-live          # embedded SQLite in the volume
#   docker run -p 8080:8080 -e DATABASE_URL=postgres://… -e REDIS_URL=redis://… nsi-live
# The build steps are the repository's own scripts (scripts/build-web, scripts/build-server),
# which CI runs too (scripts/check-image), so a broken recipe shows without a Docker engine.

# 1. The browser app: Pyodide, sql.js and the bundle, from npm (never from a CDN at run time).
FROM node:20-bookworm-slim AS assets
WORKDIR /src
COPY scripts/build-web scripts/build-web
COPY web/package.json web/package-lock.json web/
RUN cd web && npm ci --no-audit --no-fund
COPY web web
RUN scripts/build-web

# 2. The server. cargo-chef builds the dependencies in their own layer: a source change does not
#    rebuild them.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS server
COPY --from=planner /src/recipe.json recipe.json
# Patched dependencies (vendor/README.md): real sources, not part of the workspace, so cargo-chef
# (which skeletons workspace members only) leaves them whole.
COPY vendor vendor
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin nsi-live
COPY . .
# The commit shown by /metrics (nsi_build_info): `docker build --build-arg NSI_GIT_SHA=$(git
# rev-parse HEAD)`, or Railway's own variable. Declared here, after the dependencies' layer, so a
# new commit does not rebuild them.
ARG NSI_GIT_SHA
ARG RAILWAY_GIT_COMMIT_SHA
RUN NSI_GIT_SHA="${NSI_GIT_SHA:-${RAILWAY_GIT_COMMIT_SHA:-}}" scripts/build-server

# 3. A small runtime image, running as a user without privileges.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin nsi \
    && mkdir -p /app/data && chown nsi /app/data
WORKDIR /app
COPY --from=server /src/target/release/nsi-live /usr/local/bin/nsi-live
COPY content content
COPY config config
COPY migrations migrations
COPY --from=assets /src/static static
USER nsi
ENV APP_ENV=production \
    PORT=8080 \
    NSI__DATABASE__SQLITE_PATH=/app/data/nsi-live.db
# The SQLite file (when DATABASE_URL is not set) lives here: mount a volume to keep it.
VOLUME ["/app/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD curl --fail --silent --max-time 2 "http://127.0.0.1:${PORT}/healthz" || exit 1
CMD ["nsi-live", "serve"]
