import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Logger as NestPinoLogger } from 'nestjs-pino';
import { withoutMcpTrailingSlash } from './mcp/edge/trailing-slash.js';
import type { Logger } from 'pino';
import { AppModule, GLOBAL_FILTER, GLOBAL_GUARDS, type AppModuleOptions } from './app.module.js';
import { installMcpLane } from './mcp/edge/lane.js';
import { openAccessVerdict } from './auth/open-access.js';
import { ConnectionDrainer } from './common/http/connection-drainer.js';
import { HostOriginRules, isProbePath, refusedByHostOrigin } from './common/http/host-origin.js';
import { installRequestLogging } from './common/logging/request-logging.js';
import { clientErrorHandler, frameworkErrors, installInputLimits } from './common/http/input-limits.js';
import { REQUEST_ID_HEADER, requestIdFor } from './common/http/request-id.js';
import { ErrorCode } from './common/errors/error-code.js';
import { createRootLogger } from './common/logging/logger.js';
import type { AppConfig } from './config/config.schema.js';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from './database/embedded-postgres.js';
import { SchemaStateService } from './database/schema-state.service.js';
import { ReadinessService } from './health/readiness.service.js';
import { prepareDevKeyDir } from './secrets/key-ring.provider.js';
import { McpEdgeService } from './mcp/mcp-edge.service.js';
import { installOAuthServerFrom } from './oauth-server/oauth-mount.js';

export interface Gatehouse {
  app: NestFastifyApplication;
  config: AppConfig;
  logger: Logger;
  /** Where it listens, e.g. `http://127.0.0.1:3000`. */
  url: string;
  /**
   * Graceful stop: readiness goes 503, new connections are refused, in-flight requests finish
   * (bounded by `SHUTDOWN_TIMEOUT`), then the database pool, the change bus and the embedded
   * PostgreSQL close. Resolves to the exit code: 0 if everything drained, 1 if cut short.
   */
  shutdown(reason: string): Promise<number>;
}

export interface StartOptions {
  logger?: Logger;
  imports?: AppModuleOptions['imports'];
  /** Resolve the database URL lazily (tests hand in their own database). */
  embedded?: EmbeddedPostgresHandle;
}

/** How long past `SHUTDOWN_TIMEOUT` shutdown still waits for the app (pool, bus) to close, in ms. */
const SHUTDOWN_GRACE_MS = 1_000;

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts the embedded PostgreSQL when no `DATABASE_URL` is configured; returns the config to use. */
export async function resolveDatabase(
  config: AppConfig,
  logger: Logger,
): Promise<{ config: AppConfig; embedded?: EmbeddedPostgresHandle }> {
  if (config.database.url) return { config };
  // The development key's folder first: it also moves a key an earlier layout left in a 0700
  // GATEHOUSE_DATA_DIR, which the postgres user (as root) could not enter.
  if (!config.secrets.keys) prepareDevKeyDir(config.secrets.dataDir);
  const { dir, port } = config.database.embedded;
  const pgLog = logger.child({ component: 'embedded-postgres' });
  const embedded = await startEmbeddedPostgres({ dir, port, database: 'gatehouse', log: (line) => pgLog.debug(line) });
  logger.info(
    { dataDir: embedded.dataDir, port },
    `DATABASE_URL is not set: using an embedded PostgreSQL on 127.0.0.1:${port} with its data in ${embedded.dataDir}`,
  );
  return { config: { ...config, database: { ...config.database, url: embedded.url } }, embedded };
}

/**
 * Builds, starts and returns a Gatehouse: the HTTP server listens first, then migrations run
 * (readiness says 503 until they are done), so a long migration never fails a liveness probe.
 */
export async function startGatehouse(baseConfig: AppConfig, options: StartOptions = {}): Promise<Gatehouse> {
  // main.ts exits 78 on this first; callers embedding Gatehouse get an error instead.
  const openAccess = openAccessVerdict(baseConfig);
  if (openAccess.kind === 'refuse') throw new Error(openAccess.message);
  const logger = options.logger ?? (await createRootLogger(baseConfig));
  let embedded = options.embedded;
  let config = baseConfig;
  if (!embedded) ({ config, embedded } = await resolveDatabase(baseConfig, logger));

  const adapter = new FastifyAdapter({
    bodyLimit: config.http.maxRequestBytes,
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    // Fastify takes a hop count too; Nest's adapter type omits it.
    trustProxy: config.http.trustProxy as boolean | string[],
    genReqId: requestIdFor,
    logger: false,
    // A request without Host is answered by the Host/Origin hook (400 with the error envelope,
    // probes exempt) rather than by Node's bare 400.
    http: { requireHostHeader: false },
    // During close, new requests on kept-alive connections get 503 in our envelope
    // (installInputLimits) rather than Fastify's body; idle connections are closed.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // `/mcp/` and `/mcp/<server>/` serve like `/mcp` and `/mcp/<server>`.
    rewriteUrl: (req: { url?: string }) => withoutMcpTrailingSlash(req.url ?? '/'),
    // Parser-level (431, 408, 400) and router-level (bad URL 400, long parameter 414) errors in our envelope.
    clientErrorHandler,
    frameworkErrors,
  });

  let app: NestFastifyApplication;
  try {
    app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot({ config, logger, imports: options.imports }), adapter, {
      bufferLogs: true,
      abortOnError: false,
    });
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  app.useLogger(app.get(NestPinoLogger));
  app.flushLogs();

  const fastify = app.getHttpAdapter().getInstance();
  // Kept-alive connections close as soon as their last response is written once draining.
  const drainer = new ConnectionDrainer(fastify.server);
  // JSON depth, body timeout, 503 while closing (see docs/operations.md, "Input limits").
  const inputLimits = installInputLimits(app, fastify, {
    maxJsonDepth: config.http.maxJsonDepth,
    bodyTimeoutMs: config.http.bodyTimeoutMs,
    isClosing: () => drainer.isDraining,
  });
  // First hook: every later hook and handler runs in the request's logging scope; the input
  // limits' checks (503 while closing, the body timer) run first thing inside it.
  installRequestLogging(fastify, logger, inputLimits);
  const schema = app.get(SchemaStateService);
  // The authorization server's paths go to oidc-provider before any other hook (docs/oauth-server.md).
  if (config.oauthServer.enabled) installOAuthServerFrom(app, fastify, config, () => schema.isMigrated);
  // One hook (not one per check): Host and Origin on every route, before anything else looks at
  // the request (docs/auth.md, "Browsers"); then the request id header; then, between listening
  // and the end of migrations, a clear 503 instead of a 500 from a missing table (probes answer).
  const hostOrigin = HostOriginRules.fromConfig(config);
  fastify.addHook('onRequest', (request, reply, done) => {
    if (refusedByHostOrigin(hostOrigin, request, reply)) return;
    void reply.header(REQUEST_ID_HEADER, request.id);
    if (!schema.isMigrated && !isProbePath(request.url)) {
      void reply
        .status(503)
        .header('retry-after', '2')
        .send({ error: { code: ErrorCode.ServiceUnavailable, message: 'Gatehouse is starting: database migrations are not applied yet', requestId: request.id } });
      return;
    }
    done();
  });

  installMcpLane(app, fastify, GLOBAL_GUARDS, GLOBAL_FILTER); // POST /mcp[/<server>] past Nest's router, same guards/filter (src/mcp/edge/lane.ts)

  // Admin API reference: the document at /api/openapi.json, a browsable UI at /api/docs.
  const openapi = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Gatehouse admin API')
      .setDescription('Manage the upstream MCP servers, users, keys, policies and secrets behind a Gatehouse MCP gateway.')
      .setVersion('v1')
      .addServer(config.http.publicUrl)
      .build(),
  );
  SwaggerModule.setup('api/docs', app, openapi, { jsonDocumentUrl: 'api/openapi.json', yamlDocumentUrl: 'api/openapi.yaml' });

  if (config.http.cors.enabled) {
    const { origins, methods, headers, credentials } = config.http.cors;
    app.enableCors({
      origin: origins.includes('*') ? true : origins,
      methods,
      allowedHeaders: headers,
      exposedHeaders: ['Mcp-Session-Id', 'X-Request-Id', 'WWW-Authenticate', 'MCP-Protocol-Version'],
      credentials,
      maxAge: 600,
    });
  }

  try {
    await app.listen(config.http.port, config.http.host);
  } catch (error) {
    // init hooks (e.g. a bad GATEHOUSE_SERVERS_FILE) or a taken port: release what started.
    await app.close().catch(() => undefined);
    await embedded?.stop();
    throw error;
  }
  const address = fastify.server.address();
  const port = typeof address === 'object' && address ? address.port : config.http.port;
  const url = `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${port}`;
  logger.info({ url, publicUrl: config.http.publicUrl }, `Gatehouse listening on ${url}`);
  if (openAccess.kind === 'warn') logger.warn({ code: 'open_access' }, openAccess.message);

  if (config.database.migrate) {
    try {
      const { applied } = await schema.migrate();
      logger.info({ applied }, applied.length ? `applied ${applied.length} migration(s)` : 'database schema is current');
    } catch (error) {
      logger.error({ err: error }, 'migrations failed; stopping');
      await app.close().catch(() => undefined);
      await embedded?.stop();
      throw error;
    }
  } else {
    schema.watch();
    logger.info('DB_MIGRATE=false: not migrating; readiness waits until the schema is current');
  }

  let stopping: Promise<number> | undefined;
  const shutdown = (reason: string): Promise<number> =>
    (stopping ??= (async () => {
      logger.info({ reason }, 'shutting down: readiness now 503, draining in-flight requests');
      app.get(ReadinessService).beginShutdown();
      if (config.shutdown.delayMs > 0) await wait(config.shutdown.delayMs);
      let drained = true;
      const closing = (async () => {
        drainer.begin();
        // Notification streams never end by themselves: end them so the drain is about requests.
        app.get(McpEdgeService).endStreams();
        // Drain HTTP first: Nest runs module destroy hooks before it closes the server.
        await fastify.close();
        await app.close();
      })();
      const timer = setTimeout(() => {
        drained = false;
        logger.warn({ timeoutMs: config.shutdown.timeoutMs }, 'shutdown timeout: closing remaining connections');
        fastify.server.closeAllConnections();
      }, config.shutdown.timeoutMs);
      // Closing the pool waits on the database (a frozen one never answers): past the timeout
      // and a short grace, stop waiting, so the process still exits (with 1).
      let giveUp: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<'gave up'>((resolve) => {
        giveUp = setTimeout(() => resolve('gave up'), config.shutdown.timeoutMs + SHUTDOWN_GRACE_MS);
      });
      try {
        if ((await Promise.race([closing, gaveUp])) === 'gave up') {
          drained = false;
          void closing.catch(() => undefined);
          logger.error({ timeoutMs: config.shutdown.timeoutMs }, 'shutdown timeout: the app did not finish closing; giving up on it');
        }
      } catch (error) {
        drained = false;
        logger.error({ err: error }, 'error while closing the app');
      } finally {
        clearTimeout(timer);
        clearTimeout(giveUp);
      }
      if (embedded) {
        await embedded.stop().catch((error: unknown) => logger.error({ err: error }, 'embedded PostgreSQL did not stop cleanly'));
        logger.info('embedded PostgreSQL stopped');
      }
      logger.info({ drained }, 'Gatehouse stopped');
      return drained ? 0 : 1;
    })());

  return { app, config, logger, url, shutdown };
}
