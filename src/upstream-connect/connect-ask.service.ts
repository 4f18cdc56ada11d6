import { randomBytes, randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { UrlElicitationRequiredError, type CallToolResult } from '@modelcontextprotocol/server';
import type { Principal } from '../auth/principal.js';
import type { McpEra } from '../mcp/pipeline/mcp-operation.js';
import type { ConnectRequest } from '../upstream-oauth/upstream-connections.service.js';
import { ConnectLinks } from './connect-links.service.js';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The `requestState` of an `input_required` result that asks to connect an account: a retry
 * carrying it is a fresh call (nothing is parked upstream), unlike the broker's states.
 */
export const CONNECT_REQUEST_STATE_PREFIX = 'gatehouse-connect.';

/** Whether a 2026-07-28 retry's `requestState` answers a connect ask (see {@link CONNECT_REQUEST_STATE_PREFIX}). */
export function isConnectRequestState(state: unknown): boolean {
  return typeof state === 'string' && state.startsWith(CONNECT_REQUEST_STATE_PREFIX);
}

/**
 * A 2026-07-28 retry that answers a connect ask with `decline` or `cancel` (the user did not
 * connect): the tool error to return instead of asking again, so a client that declines
 * automatically does not loop. Undefined for any other request.
 */
export function declinedConnect(client: { requestState?: string; inputResponses?: Record<string, unknown> } | undefined): CallToolResult | undefined {
  if (!client || !isConnectRequestState(client.requestState)) return undefined;
  for (const [key, answer] of Object.entries(client.inputResponses ?? {})) {
    const action = isObject(answer) ? answer.action : undefined;
    if (key.startsWith('connect-') && (action === 'decline' || action === 'cancel')) {
      const server = key.slice('connect-'.length);
      return { isError: true, content: [{ type: 'text', text: `You did not connect your account for "${server}", so the call was not made. Run it again to be asked again.` }] };
    }
  }
  return undefined;
}

/** The operation a connect ask answers: its era, what the client declared, who calls. */
export interface AskingOperation {
  era: McpEra;
  principal: Principal;
  client?: { capabilities?: Record<string, unknown> };
}

/** Whether the client declared URL-mode elicitation (`capabilities.elicitation.url`, MCP 2025-11-25 client/elicitation). */
export function supportsUrlElicitation(capabilities: Record<string, unknown> | undefined): boolean {
  return isObject(capabilities?.elicitation) && capabilities.elicitation.url !== undefined;
}

/**
 * Turns a route's `connect` problem (the caller must connect, reconnect, or grant more scopes
 * to an upstream that needs their OAuth account) into what the client's era can show its user:
 *
 * - 2025-11-25 clients that declared `elicitation.url`: the `URLElicitationRequiredError`
 *   (JSON-RPC -32042, the URL elicitation in `error.data.elicitations`; spec 2025-11-25,
 *   client/elicitation "URL Elicitation Required Error"). The client opens the URL and retries.
 * - 2026-07-28 clients that declared `elicitation.url`: an `input_required` result carrying the
 *   URL-mode `elicitation/create` (basic/patterns/mrtr); the client's retry with the
 *   `requestState` is a fresh call, which succeeds once the user has connected.
 * - other clients: an `isError` tool result with the link and plain instructions.
 *
 * The link is personal: it names the caller's Gatehouse user (sealed, expiring; see
 * {@link ConnectLinks}). A principal without a user (an API key no user owns) cannot connect in
 * the browser: it gets the problem text (which names the stored-token API).
 */
@Injectable()
export class ConnectAsk {
  constructor(private readonly links: ConnectLinks) {}

  /**
   * The era's answer to `problem` for `op`: returns the tool result to send, or throws the
   * -32042 protocol error. `otherwise()` (the plain problem) when there is nothing to ask
   * (`problem.connect` unset, a principal without a user), and for an operation whose result
   * is not a tool result (`toolResult` false: prompts/get, resources/read) unless the -32042
   * error applies.
   */
  answer<T>(op: AskingOperation, problem: { problem: string; connect?: ConnectRequest }, otherwise: () => T, toolResult = true): T {
    const connect = problem.connect;
    const owner = op.principal.userId;
    if (!connect || !owner) return otherwise();
    const link = this.links.linkFor(connect.server, owner, connect.reason === 'insufficient_scope' ? (connect.scopes ?? []) : []);
    const message = messageFor(connect);
    const urlMode = supportsUrlElicitation(op.client?.capabilities);
    if (urlMode && op.era === 'legacy') throw new UrlElicitationRequiredError([{ mode: 'url', message, url: link, elicitationId: randomUUID() }], message);
    // Prompts and resources: no tool result to carry the link, and their retries are not recognised here.
    if (!toolResult) return otherwise();
    if (urlMode) {
      return {
        resultType: 'input_required',
        inputRequests: { [`connect-${connect.server}`]: { method: 'elicitation/create', params: { mode: 'url', message, url: link } } },
        requestState: `${CONNECT_REQUEST_STATE_PREFIX}${randomBytes(12).toString('base64url')}`,
      } as T;
    }
    return {
      isError: true,
      content: [
        {
          type: 'text',
          text: `${message}. Open this link in your browser, signed in to Gatehouse as yourself, and approve: ${link}\nThen run this call again. (${problem.problem})`,
        },
      ],
    } as T;
  }
}

/** The sentence the user reads (in the client's prompt, or the tool error). */
function messageFor(connect: ConnectRequest): string {
  switch (connect.reason) {
    case 'needs_reauth':
      return `Your connection to "${connect.server}" must be renewed: connect your account again`;
    case 'insufficient_scope':
      return `"${connect.server}" needs more access than your connection grants${connect.scopes?.length ? ` (${connect.scopes.join(' ')})` : ''}: approve the wider access`;
    default:
      return `"${connect.server}" acts with your own account there: connect it to continue`;
  }
}
