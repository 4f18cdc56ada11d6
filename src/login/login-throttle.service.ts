import { Inject, Injectable } from '@nestjs/common';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';

/**
 * Throttling of password sign-ins (OWASP Authentication Cheat Sheet, "Protect against automated
 * attacks"): failed attempts are counted per account (`GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT`)
 * and per client address (`…_PER_ADDRESS`) within `GATEHOUSE_LOGIN_FAILURE_WINDOW`; at the limit
 * further attempts are refused without checking the password until the window ends. Counters
 * live in PostgreSQL (`login_throttle`, rate-limiter-flexible's RateLimiterPostgres), so every
 * replica enforces the same limit. A success clears the account's counter, not the address's.
 */
@Injectable()
export class LoginThrottleService {
  private readonly account: RateLimiterPostgres;
  private readonly address: RateLimiterPostgres;

  constructor(dataSource: DataSource, @Inject(APP_CONFIG) config: AppConfig) {
    const common = { storeClient: dataSource, storeType: 'typeorm', tableName: 'login_throttle', tableCreated: true, duration: Math.ceil(config.login.failureWindowMs / 1000) };
    this.account = new RateLimiterPostgres({ ...common, keyPrefix: 'account', points: config.login.maxFailuresPerAccount });
    this.address = new RateLimiterPostgres({ ...common, keyPrefix: 'address', points: config.login.maxFailuresPerAddress });
  }

  /** ms until `username` from `ip` may try again, or 0 when an attempt is allowed now. */
  async blockedFor(username: string, ip: string): Promise<number> {
    const [a, b] = await Promise.all([this.account.get(username), this.address.get(ip)]);
    const wait = (res: RateLimiterRes | null, points: number) => (res && res.consumedPoints >= points ? Math.max(1, res.msBeforeNext) : 0);
    return Math.max(wait(a, this.account.points), wait(b, this.address.points));
  }

  /** Counts one failed attempt against both budgets. */
  async fail(username: string, ip: string): Promise<void> {
    await Promise.all([this.account.penalty(username, 1), this.address.penalty(ip, 1)]);
  }

  /** Clears the account's failures after a successful sign-in. */
  async succeed(username: string): Promise<void> {
    await this.account.delete(username);
  }
}
