import { Injectable, Module } from '@nestjs/common';
import { ProtocolError } from '@modelcontextprotocol/server';
import { McpOperationHookProvider, type McpOperationHook } from '../../src/mcp/pipeline/mcp-operation-hooks.js';
import type { AuthorizedOperation } from '../../src/mcp/pipeline/authorized-operation.js';
import type { ClassifiedOperation, McpOperationRequest, McpOutcome } from '../../src/mcp/pipeline/mcp-operation.js';

export interface RpcBody {
  jsonrpc: '2.0';
  id: number | string | null;
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: unknown };
}

export const MODERN = '2026-07-28';
export const LEGACY = '2025-06-18';
export const ACCEPT = 'application/json, text/event-stream';
export const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientInfo': { name: 'raw-modern', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
};

/** POSTs one JSON-RPC message; parses a JSON or single-event SSE answer. */
export async function rpc(url: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; headers: Headers; body: RpcBody | undefined }> {
  const res = await fetch(url, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  const json = text.startsWith('event:') || text.startsWith('data:') ? text.split('\n').find((l) => l.startsWith('data:'))?.slice(5) : text;
  return { status: res.status, headers: res.headers, body: json ? (JSON.parse(json) as RpcBody) : undefined };
}

/** Opens a legacy session at `url`; returns the headers of requests in it. */
export async function legacySession(url: string): Promise<Record<string, string>> {
  const init = await rpc(
    url,
    { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: 'raw-legacy', version: '1' } } },
    { 'content-type': 'application/json', accept: ACCEPT },
  );
  if (init.status !== 200) throw new Error(`initialize: ${init.status}`);
  return { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': LEGACY, 'mcp-session-id': init.headers.get('mcp-session-id')! };
}

/** A legacy-era request in a session. */
export function legacyRequest(method: string, params?: Record<string, unknown>, id: number | string = 1): Record<string, unknown> {
  return { jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) };
}

/** A modern (2026-07-28) request and the headers the spec requires for it. */
export function modernRequest(method: string, params: Record<string, unknown> = {}, id: number | string = 1): { body: Record<string, unknown>; headers: Record<string, string> } {
  const name = typeof params.name === 'string' ? params.name : typeof params.uri === 'string' ? params.uri : undefined;
  return {
    body: { jsonrpc: '2.0', id, method, params: { ...params, _meta: { ...ENVELOPE, ...(params._meta as object | undefined) } } },
    headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': MODERN, 'mcp-method': method, ...(name === undefined ? {} : { 'mcp-name': name }) },
  };
}

export interface HookEvent {
  phase: 'before' | 'after' | 'refused';
  kind: string;
  scope: string;
  principal: string;
  era: string;
  path: string;
  target?: { server: string; name: string };
  policyName?: string;
  outcome?: McpOutcome;
  error?: { code: number; message: string };
}

/** A pipeline hook that records what passes through it; `refuseNext` makes beforeCall refuse once (like a rate limiter). */
@McpOperationHookProvider()
@Injectable()
export class RecordingHook implements McpOperationHook {
  readonly events: HookEvent[] = [];
  refuseNext = false;

  beforeCall(op: AuthorizedOperation): void {
    this.events.push({ phase: 'before', ...describe(op.operation) });
    if (this.refuseNext) {
      this.refuseNext = false;
      throw new ProtocolError(-32029, 'Too many requests (test hook)');
    }
  }

  afterCall(op: AuthorizedOperation, outcome: McpOutcome): void {
    this.events.push({ phase: 'after', ...describe(op.operation), outcome });
  }

  onRefused(request: McpOperationRequest | ClassifiedOperation, error: { code: number; message: string }): void {
    this.events.push({ phase: 'refused', ...describe(request), error });
  }
}

function describe(op: McpOperationRequest | ClassifiedOperation): Omit<HookEvent, 'phase'> {
  const c = op as ClassifiedOperation;
  return { kind: op.kind, scope: op.scope, principal: op.principal.id, era: op.era, path: op.path, target: c.target, policyName: c.policy?.name };
}

/** Mount with `startTestApp(url, env, { imports: [RecordingHookModule] })`. */
@Module({ providers: [RecordingHook] })
export class RecordingHookModule {}
