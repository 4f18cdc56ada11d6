import { Controller, Get, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { Public } from '../common/decorators/public.decorator.js';
import { ReadinessService, type ReadinessReport } from './readiness.service.js';

@Controller()
@Public()
export class HealthController {
  constructor(private readonly readiness: ReadinessService) {}

  /** Liveness: the process is up and its event loop turns. Never touches the database. */
  @Get('healthz')
  healthz(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** Readiness: 200 when this replica can serve, 503 (with the failing checks) when not. */
  @Get('readyz')
  async readyz(@Res({ passthrough: true }) reply: FastifyReply): Promise<{ status: 'ready' | 'not_ready' } & Pick<ReadinessReport, 'checks' | 'reasons'>> {
    const report = await this.readiness.check();
    void reply.status(report.ready ? 200 : 503).header('cache-control', 'no-store');
    return { status: report.ready ? 'ready' : 'not_ready', checks: report.checks, ...(report.reasons ? { reasons: report.reasons } : {}) };
  }
}
