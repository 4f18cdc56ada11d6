import type { JSONRPCMessage, Transport } from '@modelcontextprotocol/client';

/** Longest `data` of a notifications/message kept as text (characters), before the ring cuts it. */
const MAX_DATA_TEXT = 4_000;

/**
 * Taps a connected transport's incoming messages: every `notifications/message` (MCP spec,
 * server/utilities/logging) is handed to `record` as (level, text) — `data` as is when it is a
 * string, else as JSON, prefixed with the `logger` name — and then passed on to the SDK client
 * unchanged. Wraps `transport.onmessage` (set by `client.connect`) rather than registering a
 * notification handler, so whoever forwards these notifications to clients keeps its own
 * handler. Call it after `client.connect`.
 */
export function recordLogNotifications(transport: Transport, record: (level: string, text: string) => void): void {
  const deliver = transport.onmessage;
  if (!deliver) return;
  transport.onmessage = ((message: JSONRPCMessage, ...rest: unknown[]) => {
    if ('method' in message && message.method === 'notifications/message' && !('id' in message)) {
      const params = (message.params ?? {}) as { level?: unknown; logger?: unknown; data?: unknown };
      const level = typeof params.level === 'string' ? params.level.slice(0, 20) : 'info';
      let text = typeof params.data === 'string' ? params.data : (JSON.stringify(params.data) ?? '');
      if (text.length > MAX_DATA_TEXT) text = text.slice(0, MAX_DATA_TEXT);
      record(level, typeof params.logger === 'string' ? `[${params.logger.slice(0, 100)}] ${text}` : text);
    }
    (deliver as (message: JSONRPCMessage, ...rest: unknown[]) => void).call(transport, message, ...rest);
  });
}
