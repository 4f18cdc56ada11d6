import { SdkHttpError } from '@modelcontextprotocol/client';
import { UpstreamSessionLostError } from './http-forwarder.js';

/**
 * Whether `error` says the upstream no longer knows the session the request carried (it
 * restarted, or expired the session): Gatehouse's own {@link UpstreamSessionLostError}, or
 * the SDK client's HTTP 404 — or 400, which servers that forgot every session answer
 * ("Bad Request: No valid session ID provided", "Server not initialized") — while
 * `hadSession`. MCP 2025-06-18 basic/transports §Session Management: "When a client receives
 * HTTP 404 in response to a request containing an Mcp-Session-Id, it MUST start a new session
 * by sending a new InitializeRequest without a session ID attached."
 */
export function isSessionLost(error: unknown, hadSession: boolean): boolean {
  if (error instanceof UpstreamSessionLostError) return true;
  if (!hadSession || !(error instanceof SdkHttpError)) return false;
  const status = (error as { status?: unknown }).status;
  return status === 404 || status === 400;
}
