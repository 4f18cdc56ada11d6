import { Inject, Injectable, type BeforeApplicationShutdown } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/server';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { ChangeBusService } from '../../database/change-bus.service.js';
import { stringFields, topic } from '../../database/change-bus.js';

/** A retried request as the owner resumes it: who sent it, for what, and its MRTR fields. */
export interface RelayedRetry {
  principalId: string;
  target: string;
  requestState: string;
  inputResponses: Record<string, unknown>;
}

/** Resumes a parked call on this replica exactly as a local retry (the broker's `resume`). */
export type ResumeHere = (retry: RelayedRetry, signal: AbortSignal) => Promise<Record<string, unknown>>;

/** A round's outcome as stored in the mailbox row: the result, or the error's JSON-RPC shape. */
type StoredOutcome = { ok: true; value: Record<string, unknown> } | { ok: false; error: { code?: number; message: string; data?: unknown } };

/** Bus topics; payloads carry only the row id and the replica meant to act (NOTIFY caps payloads at ~7.9 KB). */
const RETRY = topic('mcp.input-required.retry', stringFields('id', 'to'));
const OUTCOME = topic('mcp.input-required.outcome', stringFields('id', 'to'));
const CANCEL = topic('mcp.input-required.cancel', stringFields('id', 'to'));

/** Separates the owning replica's id from the random part of a `requestState`. */
const STATE_SEPARATOR = '.';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The -32602 a client gets when the replica holding its call is gone (or never answered).
 * Same code as an unknown state: the client calls again without `requestState`.
 */
export const ownerGone = () =>
  new ProtocolError(
    ProtocolErrorCode.InvalidParams,
    'requestState belongs to a Gatehouse replica that did not answer (it may have stopped, see GATEHOUSE_INPUT_REQUIRED_RELAY_TIMEOUT): call again without it',
  );

/** The database could not be used to relay a retry (the row is the only way to reach the owner). */
const relayUnavailable = () =>
  new ProtocolError(
    ProtocolErrorCode.InternalError,
    'Gatehouse could not pass this retry to the replica holding the call (its database is unavailable): retry shortly, or call again without requestState',
  );

/**
 * Serves a 2026-07-28 `input_required` retry (MRTR, basic/patterns/mrtr) on any replica: the
 * parked call lives in the memory of the replica that started it, whose change-bus
 * `instanceId` is the prefix of the `requestState` ({@link mintState}). A replica that receives a
 * retry for another replica's state {@link forward}s it: it writes the retry into a row of
 * `input_required_relay` (the payload can exceed a NOTIFY's ~7.9 KB) and announces the row id on
 * the change bus. The owner claims the row (sets `heartbeat_at`), resumes the call as a local
 * retry — its principal and tool checks included — refreshes `heartbeat_at` while the round
 * runs, then stores the outcome (result, next `input_required`, or error) and announces it back.
 * The forwarding replica also polls the row, so a lost notification only slows it down.
 *
 * An owner that does not claim the row, or stops refreshing it, within
 * GATEHOUSE_INPUT_REQUIRED_RELAY_TIMEOUT is taken as gone: the client gets -32602 ("call again
 * without requestState"), never a hang. A client that disconnects from the forwarding replica
 * cancels the round on the owner, as it would locally. Rows older than
 * GATEHOUSE_INPUT_REQUIRED_TTL are swept.
 */
@Injectable()
export class InputRequiredRelay implements BeforeApplicationShutdown {
  private readonly waiting = new Map<string, () => void>();
  private readonly serving = new Map<string, AbortController>();
  private readonly ttlMs: number;
  private readonly timeoutMs: number;
  private resumeHere: ResumeHere | undefined;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly bus: ChangeBusService,
    private readonly dataSource: DataSource,
  ) {
    this.ttlMs = config.upstreams.inputRequiredTtlMs;
    this.timeoutMs = config.upstreams.inputRequiredRelayTimeoutMs;
  }

  /** Starts serving retries relayed to this replica with `resume` (called by the broker at bootstrap). */
  serve(resume: ResumeHere): void {
    this.resumeHere = resume;
    const mine = (data: { to: string } | undefined) => data !== undefined && data.to === this.bus.instanceId;
    this.unsubscribe.push(
      this.bus.subscribe(RETRY, (event) => {
        if (mine(event.data)) void this.take(event.data.id, event.origin);
      }),
      this.bus.subscribe(OUTCOME, (event) => {
        if (mine(event.data)) this.waiting.get(event.data.id)?.();
      }),
      this.bus.subscribe(CANCEL, (event) => {
        if (mine(event.data)) this.serving.get(event.data.id)?.abort(new ProtocolError(ProtocolErrorCode.InternalError, 'The client went away'));
      }),
    );
  }

  beforeApplicationShutdown(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    for (const wake of this.waiting.values()) wake();
  }

  /** A new `requestState`: this replica's id, then `random` (which the broker keys its parked call by). */
  mintState(random: string): string {
    return `${this.bus.instanceId}${STATE_SEPARATOR}${random}`;
  }

  /** The replica a `requestState` names, or undefined when it names none or this one. */
  ownerOf(requestState: string): string | undefined {
    const at = requestState.indexOf(STATE_SEPARATOR);
    const owner = at > 0 ? requestState.slice(0, at) : undefined;
    // Replica ids are UUIDs: anything else (a forged state) is unknown here, not relayed.
    return owner === undefined || owner === this.bus.instanceId || !UUID.test(owner) ? undefined : owner;
  }

  /**
   * Relays `retry` to replica `owner` and resolves with the round's answer there (a result or
   * the next `input_required`); rejects with the owner's error (e.g. -32602 for a foreign
   * principal), with {@link ownerGone} when it does not answer in time, or with `signal`'s
   * reason when this replica's client goes away (the owner's round is then cancelled).
   */
  async forward(owner: string, retry: RelayedRetry, signal: AbortSignal | undefined): Promise<Record<string, unknown>> {
    const id = randomUUID();
    void this.dataSource.query('DELETE FROM input_required_relay WHERE expires_at < now()').catch(() => undefined);
    await this.dataSource
      .query(
        `INSERT INTO input_required_relay (id, owner_instance, principal_id, target, request_state, input_responses, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))`,
        [id, owner, retry.principalId, retry.target, retry.requestState, JSON.stringify(retry.inputResponses), this.ttlMs / 1000],
      )
      .catch(() => {
        throw relayUnavailable();
      });
    let wake: () => void = () => undefined;
    this.waiting.set(id, () => wake());
    const onAbort = () => wake();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // Without the bus the owner never hears of the row: same answer as a gone owner.
      await this.bus.publish(RETRY, { id, to: owner }).catch(() => {
        throw ownerGone();
      });
      const pollMs = Math.max(50, Math.min(500, Math.floor(this.timeoutMs / 4)));
      for (;;) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pollMs);
          wake = () => (clearTimeout(timer), resolve());
        });
        if (signal?.aborted) {
          void this.bus.publish(CANCEL, { id, to: owner }).catch(() => undefined);
          throw signal.reason instanceof Error ? signal.reason : new ProtocolError(ProtocolErrorCode.InternalError, 'The request was cancelled');
        }
        const rows = await this.dataSource.query<{ outcome: StoredOutcome | null; silent_ms: string | number }[]>(
          `SELECT outcome, extract(epoch FROM now() - coalesce(heartbeat_at, created_at)) * 1000 AS silent_ms
             FROM input_required_relay WHERE id = $1`,
          [id],
        ).catch((): never => {
          throw relayUnavailable();
        });
        const row = rows[0];
        if (!row) throw ownerGone();
        if (row.outcome) {
          if (row.outcome.ok) return row.outcome.value;
          const e = row.outcome.error;
          throw typeof e.code === 'number' ? new ProtocolError(e.code, e.message, e.data) : new Error(e.message);
        }
        if (Number(row.silent_ms) > this.timeoutMs) throw ownerGone();
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.waiting.delete(id);
      await this.dataSource.query('DELETE FROM input_required_relay WHERE id = $1', [id]).catch(() => undefined);
    }
  }

  /** Owner side: claims row `id`, resumes the call here, stores the outcome and tells `requester`. */
  private async take(id: string, requester: string): Promise<void> {
    type Claimed = { principal_id: string; target: string; request_state: string; input_responses: Record<string, unknown> };
    const claimed = (await this.dataSource
      .query(
        `UPDATE input_required_relay SET heartbeat_at = now()
          WHERE id = $1 AND owner_instance = $2 AND heartbeat_at IS NULL AND outcome IS NULL
          RETURNING principal_id, target, request_state, input_responses`,
        [id, this.bus.instanceId],
      )
      .catch(() => [])) as unknown[];
    // TypeORM answers an UPDATE … RETURNING with [rows, affected].
    const rows = (Array.isArray(claimed[0]) ? claimed[0] : claimed) as Claimed[];
    const row = rows[0];
    if (!row || !this.resumeHere) return;
    const abort = new AbortController();
    this.serving.set(id, abort);
    const heartbeat = setInterval(() => {
      void this.dataSource.query('UPDATE input_required_relay SET heartbeat_at = now() WHERE id = $1', [id]).catch(() => undefined);
    }, Math.max(20, Math.floor(this.timeoutMs / 3)));
    heartbeat.unref();
    let outcome: StoredOutcome;
    try {
      const retry = { principalId: row.principal_id, target: row.target, requestState: row.request_state, inputResponses: row.input_responses };
      outcome = { ok: true, value: await this.resumeHere(retry, abort.signal) };
    } catch (error) {
      outcome = { ok: false, error: storedError(error) };
    } finally {
      clearInterval(heartbeat);
      this.serving.delete(id);
    }
    await this.dataSource.query('UPDATE input_required_relay SET outcome = $2 WHERE id = $1', [id, JSON.stringify(outcome)]).catch(() => undefined);
    await this.bus.publish(OUTCOME, { id, to: requester }).catch(() => undefined);
  }
}

/** An error as JSON: a JSON-RPC error keeps its code, message and data; anything else its message only. */
function storedError(error: unknown): { code?: number; message: string; data?: unknown } {
  if (error instanceof ProtocolError) return { code: error.code, message: error.message, ...(error.data === undefined ? {} : { data: error.data }) };
  return { message: error instanceof Error ? error.message : String(error) };
}
