# syntax=docker/dockerfile:1
# Latchkey image: Node 24 runs the TypeScript sources directly (type stripping); no build step.

# --- dependencies -------------------------------------------------------------------------
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only. --omit=dev drops the `node` devDependency, which exists only to
# bring Node 24 to machines with an older system Node; this base image already is Node 24.
# argon2 ships prebuilt N-API binaries (prebuilds/linux-x64, linux-arm64, glibc) that
# node-gyp-build loads at runtime, so no compiler is needed and install scripts can be skipped.
# (--ignore-scripts also skips our postinstall, which pre-builds an embedded-PGlite template:
# an optional start-up speed-up for DATABASE_URL-less runs; without it PGlite runs initdb.)
# The probe fails the build if the native binary does not load on this platform.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && node -e "require('argon2').hash('probe').then(() => console.log('argon2: prebuilt binary loads'))" \
 && npm cache clean --force

# --- runtime ------------------------------------------------------------------------------
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
# Code and dependencies stay root-owned (read-only for the service user).
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY src ./src
COPY migrations ./migrations
COPY views ./views
COPY public ./public
# DATA_DIR (./data): the embedded database when DATABASE_URL is unset; mount a volume here then.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:3000/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The node flags of `npm start` (see README, Performance): a smaller young generation and
# baseline-compiled WebAssembly keep resident memory down at no measured throughput cost.
CMD ["node", "--max-semi-space-size=8", "--liftoff-only", "src/main.ts", "serve"]
