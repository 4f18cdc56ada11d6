import { openAccessVerdict } from './auth/open-access.js';
import { startGatehouse, type Gatehouse } from './bootstrap.js';
import { createRootLogger } from './common/logging/logger.js';
import { loadConfigOrExit } from './config/load-config.js';

const config = loadConfigOrExit();
// No authentication on a network address: refused like a configuration error, before anything starts.
const openAccess = openAccessVerdict(config);
if (openAccess.kind === 'refuse') {
  process.stderr.write(`Invalid configuration (1 problem):\n  ${openAccess.message}\nSee docs/auth.md and docs/configuration.md.\n`);
  process.exit(78); // EX_CONFIG from sysexits.h
}
const logger = await createRootLogger(config);

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGTERM: 15 };
let gatehouse: Gatehouse | undefined;
let signalledDuringStart: NodeJS.Signals | undefined;

// Handlers are in place before the start, not after it: readiness can turn 200 a moment before
// `startGatehouse` returns, and a SIGTERM in that gap must drain, not kill. A signal during the
// start is acted on once the start is done (a second one exits at once: a start can wait a
// long time on the database). `on`, not `once`: a repeated signal during the drain must not
// fall through to a default handler (exit, or stopping the embedded PostgreSQL); shutdown is
// idempotent.
const onSignal = (signal: NodeJS.Signals) => {
  if (!gatehouse) {
    if (signalledDuringStart) process.exit(128 + (SIGNAL_NUMBERS[signal] ?? 0));
    signalledDuringStart = signal;
    logger.warn({ signal }, `${signal} while starting: shutting down once started (again to exit now)`);
    return;
  }
  gatehouse.shutdown(signal).then(
    (code) => process.exit(code),
    () => process.exit(1),
  );
};
process.on('SIGTERM', onSignal);
process.on('SIGINT', onSignal);

try {
  gatehouse = await startGatehouse(config, { logger });
  if (signalledDuringStart) onSignal(signalledDuringStart);
} catch (error) {
  logger.fatal({ err: error }, `Gatehouse failed to start: ${(error as Error).message}`);
  process.exit(1);
}
