import { aggregatedUri } from '../../upstreams/catalog.js';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * One content block with its resource URI in the aggregated form: `resource_link` (`uri`) and
 * embedded `resource` (`resource.uri`) blocks (MCP spec, server/tools "Resource Links" and
 * "Embedded Resources"; the same blocks appear in prompt messages). Anything else, and blocks
 * without a string URI, are returned as they are.
 */
function block(server: string, content: unknown): unknown {
  if (!isObject(content)) return content;
  if (content.type === 'resource_link' && typeof content.uri === 'string') return { ...content, uri: aggregatedUri(server, content.uri) };
  if (content.type === 'resource' && isObject(content.resource) && typeof content.resource.uri === 'string') {
    return { ...content, resource: { ...content.resource, uri: aggregatedUri(server, content.resource.uri) } };
  }
  return content;
}

const hasResourceBlock = (list: unknown[]) => list.some((c) => isObject(c) && (c.type === 'resource_link' || c.type === 'resource'));

/**
 * A result from `server` as the aggregated `/mcp` endpoint passes it on, so every resource URI in
 * it can be read there (`resources/read` of `gatehouse://<server>/<uri>` reaches `server` with
 * `uri`): `tools/call` content blocks, `prompts/get` message contents (a block or a list of
 * blocks), `resources/read` contents' `uri`. The result is returned unchanged (same object, no
 * copy) when it holds no resource URI.
 */
export function withAggregatedUris<T extends object>(kind: 'tools/call' | 'prompts/get' | 'resources/read', server: string, result: T): T {
  const r = result as Json;
  if (kind === 'tools/call') {
    if (!Array.isArray(r.content) || !hasResourceBlock(r.content)) return result;
    return { ...r, content: r.content.map((c) => block(server, c)) } as T;
  }
  if (kind === 'prompts/get') {
    if (!Array.isArray(r.messages)) return result;
    const touched = r.messages.some((m) => isObject(m) && (Array.isArray(m.content) ? hasResourceBlock(m.content) : hasResourceBlock([m.content])));
    if (!touched) return result;
    const messages = (r.messages as unknown[]).map((m) => {
      if (!isObject(m)) return m;
      return { ...m, content: Array.isArray(m.content) ? m.content.map((c) => block(server, c)) : block(server, m.content) };
    });
    return { ...r, messages } as T;
  }
  if (!Array.isArray(r.contents)) return result;
  return { ...r, contents: (r.contents as unknown[]).map((c) => (isObject(c) && typeof c.uri === 'string' ? { ...c, uri: aggregatedUri(server, c.uri) } : c)) } as T;
}
