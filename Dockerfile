# herenow anywhere: one image with the release server and the demo built in.
#   docker build -t herenow .
#   docker run -p 3000:3000 herenow                       # one instance, memory store
#   docker compose up                                     # two instances + Redis + a proxy
# Every setting is an environment variable (README, "Configuration"); the image sets
# only what differs from the defaults inside a container.

# ---- the demo (apps/demo -> dist) ------------------------------------------------------
FROM node:20-bookworm-slim AS web
WORKDIR /src
# Manifests first: the npm ci layer is reused until a dependency changes.
COPY package.json package-lock.json tsconfig.json ./
COPY packages/client/package.json packages/client/
COPY packages/react/package.json packages/react/
COPY apps/demo/package.json apps/demo/
COPY e2e/package.json e2e/
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY packages packages
COPY apps/demo apps/demo
RUN npm run build --workspace apps/demo

# ---- the server (release) --------------------------------------------------------------
FROM rust:1-bookworm AS server
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN cargo build --release --locked -p herenow && cp target/release/herenow /usr/local/bin/herenow

# ---- what runs -------------------------------------------------------------------------
FROM debian:bookworm-slim
# CA roots for rediss:// (a managed Redis over TLS); nothing else is needed at run time.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin herenow
COPY --from=server /usr/local/bin/herenow /usr/local/bin/herenow
COPY --from=web /src/apps/demo/dist /srv/herenow
# A container takes its settings from its environment (compose's env_file reads files
# for it), so the env files of the working directory are not read.
ENV HOST=0.0.0.0 \
    PORT=3000 \
    STATIC_DIR=/srv/herenow \
    LOG_FORMAT=json \
    HERENOW_DOTENV=0
WORKDIR /srv/herenow
USER herenow
EXPOSE 3000
# Slim images have no curl: the binary checks itself (GET /server/healthz on PORT).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["herenow", "healthcheck"]
# SIGTERM closes every socket with 1012 (clients reconnect to another instance inside the
# grace window) and exits within DRAIN_MS.
STOPSIGNAL SIGTERM
CMD ["herenow"]
