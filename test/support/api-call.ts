/** One JSON API answer: status, raw text, parsed body (`{}` when empty). */
export interface ApiReply<T = Record<string, unknown>> {
  status: number;
  text: string;
  json: T;
}

/**
 * A JSON API caller for e2e tests: `call(path, { method, headers, body })` against the base URL
 * `base()` returns, recording every answer's text in `bodies` (for leak checks).
 */
export function apiCaller<T = Record<string, unknown>>(base: () => string, bodies: string[]) {
  return async (path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}, on?: { url: string }): Promise<ApiReply<T>> => {
    const res = await fetch(`${on?.url ?? base()}${path}`, {
      method: init.method ?? 'GET',
      headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    const text = await res.text();
    bodies.push(text);
    return { status: res.status, text, json: (text ? JSON.parse(text) : {}) as T };
  };
}
