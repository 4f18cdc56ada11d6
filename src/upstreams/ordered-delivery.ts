import type { JSONRPCMessage, Transport } from '@modelcontextprotocol/client';

/**
 * Makes an SDK client see an upstream's messages in the order they arrived. The SDK's `Protocol`
 * dispatches a notification one microtask later (`Promise.resolve().then(handler)`) but a
 * response at once, and settling a request drops its progress handler: a request's last
 * `notifications/progress`, sent just before its result (as the spec orders them), was lost
 * whenever both arrived in one read — 7 of 8 stdio calls. Delaying each response by one
 * microtask puts it behind the notifications that came before it. Call after `client.connect`
 * (which installs `onmessage`).
 */
export function deliverNotificationsFirst(transport: Transport): void {
  const deliver = transport.onmessage;
  if (!deliver) return;
  transport.onmessage = (message: JSONRPCMessage, extra?: unknown) => {
    const m = message as { method?: unknown; id?: unknown };
    if (m.method === undefined && m.id !== undefined) queueMicrotask(() => deliver(message, extra as never));
    else deliver(message, extra as never);
  };
}
