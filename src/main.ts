import { startGatehouse } from './bootstrap.js';
import { createRootLogger } from './common/logging/logger.js';
import { loadConfigOrExit } from './config/load-config.js';

const config = loadConfigOrExit();
const logger = await createRootLogger(config);

try {
  const gatehouse = await startGatehouse(config, { logger });
  const onSignal = (signal: NodeJS.Signals) => {
    gatehouse.shutdown(signal).then(
      (code) => process.exit(code),
      () => process.exit(1),
    );
  };
  // `on`, not `once`: a repeated signal must not fall through to a default handler (which
  // would exit, or stop the embedded PostgreSQL) while the drain runs; shutdown is idempotent.
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
} catch (error) {
  logger.fatal({ err: error }, `Gatehouse failed to start: ${(error as Error).message}`);
  process.exit(1);
}
