# syntax=docker/dockerfile:1
# Gatehouse: multi-stage build on the current Node LTS; the runtime image holds production
# dependencies only (no embedded PostgreSQL: set DATABASE_URL) and runs as a non-root user.
ARG NODE_VERSION=24

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY scripts ./scripts
COPY src ./src
COPY migrations ./migrations
RUN npm run build \
 && npm prune --omit=dev --omit=optional --no-audit --no-fund

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# tini reaps zombies and forwards signals to the whole tree (stdio MCP servers run as children).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./package.json
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# AsyncLocalStorage without async hooks (the default from Node 24): the request logging scope
# otherwise costs every promise a hook call; 17-27 % of the instructions of a tools/call
# (docs/benchmarks.md, issue 12).
CMD ["node", "--experimental-async-context-frame", "dist/main.js"]
