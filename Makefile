# herenow: the two contract commands are `make run` and `make test` (see README.md).
# Everything else here serves them. Works on a fresh Debian machine with Rust, Node and
# npm: redis-server, openssl and chromium are installed from apt when missing (as root),
# or the target stops and names the package to install.

SHELL := /bin/bash
PORT ?= 3000
CARGO ?= cargo
# One target dir for every build and test: a clean release build takes minutes.
export CARGO_TARGET_DIR ?= $(CURDIR)/target
BIN_DEBUG := $(CARGO_TARGET_DIR)/debug/herenow
BIN_RELEASE := $(CARGO_TARGET_DIR)/release/herenow
DEMO_DIST := apps/demo/dist

.PHONY: run dev test lint test-rust test-web test-e2e test-packages consumer-locks bench bench-smoke \
        test-vercel test-vercel-build test-vercel-dev \
        deps-redis deps-chromium web-install web-build build-debug build-release

# Tests and benchmarks never read a developer's .env.local / .env (it may hold a pulled
# production REDIS_URL): every target below, and what it runs, has HERENOW_DOTENV=0.
test lint test-rust test-web test-e2e test-packages consumer-locks test-vercel \
test-vercel-build test-vercel-dev bench bench-smoke: export HERENOW_DOTENV = 0

## make run: the demo and the WebSocket on one port (memory store), http://localhost:$(PORT)/rooms/lobby
run: build-release web-build
	@echo "herenow on http://localhost:$(PORT)/rooms/lobby"
	PORT=$(PORT) STATIC_DIR=$(DEMO_DIST) $(BIN_RELEASE)

## make test: formatting, lints and every test (Rust, Redis, web, end to end, npm packages, Vercel, bench smoke)
test: lint test-rust test-web test-e2e test-packages test-vercel bench-smoke
	@echo "make test: all green"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-rust: deps-redis
	$(CARGO) test --workspace

build-debug:
	$(CARGO) build -p herenow

build-release:
	$(CARGO) build --release -p herenow

# ---- web (packages/client, packages/react, apps/demo) -------------------------------
web-install:
	@if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	  npm ci --no-audit --no-fund; fi

web-build: web-install
	npm run build --workspace apps/demo

test-web: web-install
	npm run typecheck
	npm run format:check
	npm test

test-e2e: web-build build-debug deps-chromium deps-redis
	@mkdir -p test-artifacts
	HERENOW_BIN=$(BIN_DEBUG) CHROMIUM_BIN=/usr/bin/chromium npm run e2e
	@echo "e2e: screenshots in test-artifacts/"

# The npm packages as published (e2e/packages.test.ts): packed, publint and attw, then
# installed into the Node, Vite and Next.js apps of e2e/consumers/ in a temporary directory
# (npm ci from their lockfiles), type-checked, built and run against herenow in chromium.
test-packages: web-install build-debug deps-chromium
	@mkdir -p test-artifacts
	HERENOW_BIN=$(BIN_DEBUG) CHROMIUM_BIN=/usr/bin/chromium npm run packages --workspace e2e

# Rewrites e2e/consumers/*/package-lock.json (after a change to a consumer's package.json or
# to the packages' dependencies) by running test-packages with `npm install`.
consumer-locks: web-install build-debug deps-chromium
	UPDATE_CONSUMER_LOCKS=1 HERENOW_BIN=$(BIN_DEBUG) CHROMIUM_BIN=/usr/bin/chromium npm run packages --workspace e2e

# ---- Vercel (vercel.json; the CLI is the exact devDependency `vercel`) ----------------
# Both run offline (only the npm registry is reached, by npm ci). The CLI's telemetry is
# off. Its Rust builder cross-compiles with `cargo zigbuild` unless VERCEL_BUILD_IMAGE is
# set, which it reads as "building on Vercel's own image" and then runs plain
# `cargo build --release` (@vercel/rust's source; not documented). The function binary is
# built into CARGO_TARGET_DIR, shared with every other build here, so a second
# `make test` (or `make run` after it) recompiles nothing it does not have to; the first
# costs one release build of the server (about 4 minutes on 2 cores). The builder also
# runs `rustup -V` and, when it fails, tries to download rustup: Rust must come from
# rustup (as it does on CI and on Vercel), not from Debian's rustc package.
VERCEL := VERCEL_TELEMETRY_DISABLED=1 VERCEL_BUILD_IMAGE=1 npx --no-install vercel

test-vercel: test-vercel-build test-vercel-dev

# `vercel build` needs a linked project; a hand-written .vercel/project.json stands in
# for `vercel link` (which needs an account). It is removed again: `vercel dev -L` must run
# without one.
test-vercel-build: web-install
	@mkdir -p .vercel && rm -rf .vercel/output
	echo '{"projectId":"x","orgId":"y","settings":{}}' > .vercel/project.json
	$(VERCEL) build --yes; status=$$?; rm -f .vercel/project.json; exit $$status
	npm run e2e:vercel-output

# `vercel dev -L` builds and runs both services (Vite, and the Rust function in debug) and
# routes between them as vercel.json says; chromium checks the demo end to end through it.
test-vercel-dev: web-install deps-chromium
	@rm -f .vercel/project.json
	CHROMIUM_BIN=/usr/bin/chromium npm run e2e:vercel-dev

## make dev: herenow on :3000 plus Vite with hot reload on :5173 (proxying /server)
dev: build-debug web-install
	@trap 'kill 0' EXIT; PORT=3000 $(BIN_DEBUG) & npm run dev --workspace apps/demo

# ---- benchmarks (crates/herenow-bench) -----------------------------------------------
bench: build-release deps-redis
	$(CARGO) build --release -p herenow-bench
	$(CARGO_TARGET_DIR)/release/herenow-bench suite --profile full --bin $(BIN_RELEASE) \
	  --out docs/BENCHMARKS.md --plots docs/bench --notes docs/bench/NOTES.md

bench-smoke: build-debug deps-redis
	$(CARGO) build -p herenow-bench
	$(CARGO_TARGET_DIR)/debug/herenow-bench suite --profile smoke --bin $(BIN_DEBUG) \
	  --out $(CARGO_TARGET_DIR)/bench-smoke/BENCHMARKS.md --plots $(CARGO_TARGET_DIR)/bench-smoke

# ---- system packages -----------------------------------------------------------------
# redis-server (with redis-cli), and openssl for the certificates of the TLS tests.
deps-redis:
	@command -v redis-server >/dev/null || $(call apt_install,redis-server)
	@command -v openssl >/dev/null || $(call apt_install,openssl)

deps-chromium:
	@test -x /usr/bin/chromium || $(call apt_install,chromium)

# apt_install(pkg): install a Debian package when root, else stop and name it.
define apt_install
{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
    echo "installing $(1) from apt"; \
    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
  else echo "error: $(1) is missing; install it with: sudo apt-get install $(1)" >&2; exit 1; fi; }
endef
