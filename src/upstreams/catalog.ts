import type { Prompt, Resource, ResourceTemplateType as ResourceTemplate, Tool } from '@modelcontextprotocol/client';

/** Separator between server and upstream name in the aggregated endpoint: `github__create_issue`. */
export const NAME_SEPARATOR = '__';
/** Aggregated resource URIs: `gatehouse://<server>/<upstream uri, unchanged>`. */
export const RESOURCE_SCHEME = 'gatehouse://';

export interface CatalogSource {
  server: string;
  tools: Tool[];
  prompts: Prompt[];
  resources: Resource[];
  resourceTemplates: ResourceTemplate[];
  toolFilter: { allow?: string[]; deny?: string[] };
  /** Arguments Gatehouse fills in itself (server `inject`): hidden from the schemas clients see. */
  injected?: string[];
}

/** `tool` without the injected arguments in its input schema (properties and required). */
function withoutArguments(tool: Tool, names: string[]): Tool {
  const schema = tool.inputSchema as { properties?: Record<string, unknown>; required?: string[] };
  if (!schema.properties || !names.some((n) => n in schema.properties!)) return tool;
  const properties = Object.fromEntries(Object.entries(schema.properties).filter(([k]) => !names.includes(k)));
  const required = schema.required?.filter((k) => !names.includes(k));
  return { ...tool, inputSchema: { ...tool.inputSchema, properties, ...(required ? { required } : {}) } as Tool['inputSchema'] };
}

export interface Target {
  server: string;
  /** The name (or URI) the upstream itself uses. */
  name: string;
}

export interface Catalog {
  tools: Tool[];
  /** `JSON.stringify(tools)`, computed once: the tools/list fast path splices it in as it is. */
  readonly toolsJson: string;
  prompts: Prompt[];
  resources: Resource[];
  resourceTemplates: ResourceTemplate[];
  resolveTool(name: string): Target | undefined;
  resolvePrompt(name: string): Target | undefined;
  resolveResource(uri: string): Target | undefined;
}

const globCache = new Map<string, RegExp>();

/** `*` any run of characters, `?` one character; everything else literal. Whole-name match. */
export function globToRegExp(glob: string): RegExp {
  let re = globCache.get(glob);
  if (!re) {
    const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    re = new RegExp(`^${body}$`);
    globCache.set(glob, re);
  }
  return re;
}

/** Allow-list (empty = all) then deny-list; deny wins. Matched against the upstream's own name. */
export function toolAllowed(name: string, filter: CatalogSource['toolFilter']): boolean {
  const allow = filter.allow ?? [];
  const deny = filter.deny ?? [];
  if (allow.length > 0 && !allow.some((g) => globToRegExp(g).test(name))) return false;
  return !deny.some((g) => globToRegExp(g).test(name));
}

/**
 * Builds the tool/prompt/resource catalog a client sees. `aggregate` (the `/mcp` endpoint)
 * prefixes every name with its server (`<server>__<name>`) and wraps resource URIs
 * (`gatehouse://<server>/<uri>`) so names from different servers never collide and each maps
 * back to exactly one upstream; `single` (`/mcp/<server>`) keeps the upstream's own names.
 * Schemas and every other field pass through unchanged. Built once per change, not per request.
 */
export function buildCatalog(sources: CatalogSource[], mode: 'aggregate' | 'single'): Catalog {
  const tools: Tool[] = [];
  const prompts: Prompt[] = [];
  const resources: Resource[] = [];
  const resourceTemplates: ResourceTemplate[] = [];
  const toolIndex = new Map<string, Target>();
  const promptIndex = new Map<string, Target>();
  const prefix = (server: string, name: string) => (mode === 'aggregate' ? `${server}${NAME_SEPARATOR}${name}` : name);
  const wrapUri = (server: string, uri: string) => (mode === 'aggregate' ? `${RESOURCE_SCHEME}${server}/${uri}` : uri);
  const servers = new Set<string>();

  for (const source of sources) {
    servers.add(source.server);
    for (const tool of source.tools) {
      if (!toolAllowed(tool.name, source.toolFilter)) continue;
      const name = prefix(source.server, tool.name);
      const shown = source.injected?.length ? withoutArguments(tool, source.injected) : tool;
      tools.push(name === shown.name ? shown : { ...shown, name });
      toolIndex.set(name, { server: source.server, name: tool.name });
    }
    for (const prompt of source.prompts) {
      const name = prefix(source.server, prompt.name);
      prompts.push(name === prompt.name ? prompt : { ...prompt, name });
      promptIndex.set(name, { server: source.server, name: prompt.name });
    }
    for (const resource of source.resources) resources.push({ ...resource, uri: wrapUri(source.server, resource.uri) });
    for (const template of source.resourceTemplates) {
      resourceTemplates.push({ ...template, uriTemplate: wrapUri(source.server, template.uriTemplate) });
    }
  }
  const only = mode === 'single' ? sources[0]?.server : undefined;

  let toolsJson: string | undefined;
  return {
    tools,
    get toolsJson() {
      return (toolsJson ??= JSON.stringify(tools));
    },
    prompts,
    resources,
    resourceTemplates,
    resolveTool: (name) => toolIndex.get(name),
    resolvePrompt: (name) => promptIndex.get(name),
    resolveResource(uri) {
      if (only) return { server: only, name: uri };
      if (!uri.startsWith(RESOURCE_SCHEME)) return undefined;
      const rest = uri.slice(RESOURCE_SCHEME.length);
      const slash = rest.indexOf('/');
      if (slash <= 0) return undefined;
      const server = rest.slice(0, slash);
      return servers.has(server) ? { server, name: rest.slice(slash + 1) } : undefined;
    },
  };
}
