import type { Prompt, Resource, ResourceTemplateType as ResourceTemplate, Tool } from '@modelcontextprotocol/client';
import { assignNames, exposedName, MAX_NAME_LENGTH, type ExposedName } from './tool-names.js';

/** Separator between server and upstream name in the aggregated endpoint: `github__create_issue`. */
export const NAME_SEPARATOR = '__';
/** Aggregated resource URIs: `gatehouse://<server>/<upstream uri, unchanged>`. */
export const RESOURCE_SCHEME = 'gatehouse://';

/** `uri` of `server` as the aggregated endpoint names it: `gatehouse://<server>/<uri>`. */
export function aggregatedUri(server: string, uri: string): string {
  return `${RESOURCE_SCHEME}${server}/${uri}`;
}

export interface CatalogSource {
  server: string;
  tools: Tool[];
  prompts: Prompt[];
  resources: Resource[];
  resourceTemplates: ResourceTemplate[];
  toolFilter: { allow?: string[]; deny?: string[] };
  /** Arguments Gatehouse fills in itself (server `inject`): hidden from the schemas clients see. */
  injected?: string[];
  /** The upstream's `instructions` (initialize result), if any. */
  instructions?: string;
}

/** Most characters of one upstream's `instructions` passed on (a server's text is untrusted and unbounded). */
export const MAX_INSTRUCTIONS_LENGTH = 16_384;

/**
 * What the endpoint tells clients in its `instructions`: on `/mcp/<server>` the upstream's own
 * (absent: undefined); on `/mcp` each upstream's under a `## <server>` heading, after a line on
 * how names are formed there. Each upstream's text is cut to {@link MAX_INSTRUCTIONS_LENGTH}.
 */
function combinedInstructions(sources: CatalogSource[], mode: 'aggregate' | 'single'): string | undefined {
  const cut = (text: string) => (text.length > MAX_INSTRUCTIONS_LENGTH ? `${text.slice(0, MAX_INSTRUCTIONS_LENGTH)}… (cut by Gatehouse)` : text);
  if (mode === 'single') return sources[0]?.instructions ? cut(sources[0].instructions) : undefined;
  const sections = sources.filter((s) => s.instructions?.trim()).map((s) => `## ${s.server}\n\n${cut(s.instructions!.trim())}`);
  return sections.length === 0 ? undefined : sections.join('\n\n');
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
  /** Set on Gatehouse's own `connect` tool of a per-user OAuth server (see {@link connectTool}): never forwarded. */
  connectTool?: true;
}

/** The upstream-side name of Gatehouse's connect tool: `<server>__connect` on `/mcp`, `connect` on `/mcp/<server>`. */
export const CONNECT_TOOL_NAME = 'connect';
/** `_meta` key marking Gatehouse's connect tool (an upstream's own tool named `connect` lacks it). */
export const CONNECT_TOOL_META = 'io.gatehouse/connect';

/**
 * The tool a server with `oauth: { mode: "user" }` is listed with while no catalog of it is known
 * (no caller has connected and listed it, on any replica): calling it asks the caller to connect
 * their account (the connect flow), so an AI client's model sees that the server exists and how
 * to start using it. Empty input schema (MCP 2025-11-25 server/tools: `inputSchema` is an object
 * schema; no arguments).
 */
export function connectTool(server: string): Tool {
  return {
    name: CONNECT_TOOL_NAME,
    description: `Connect your ${server} account to use its tools. Gatehouse lists ${server}'s tools once an account is connected.`,
    inputSchema: { type: 'object', properties: {} },
    _meta: { [CONNECT_TOOL_META]: true },
  };
}

/** Whether `tool` is Gatehouse's {@link connectTool} (not an upstream's own). */
export const isConnectTool = (tool: Tool): boolean => tool._meta?.[CONNECT_TOOL_META] === true;

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
  /** Every exposed tool, prompt, resource and template name with its upstream original (see `nameWarnings`). */
  readonly names: readonly ExposedName[];
  /** The upstreams' `instructions` as this endpoint passes them on (see `combinedInstructions`). */
  readonly instructions: string | undefined;
  /** `aggregate` (`/mcp`: names and URIs namespaced) or `single` (`/mcp/<server>`). */
  readonly mode: 'aggregate' | 'single';
}

/** Shows the original name as the title when a renamed item has none, so people still recognise it. */
function renamed<T extends { name: string; title?: string }>(item: T, name: string, part: string): T {
  if (name === item.name) return item;
  return { ...item, name, ...(part !== item.name && item.title === undefined ? { title: item.name } : {}) };
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
 *
 * Every exposed tool, prompt, resource and template name meets the MCP tool-name rule (spec
 * 2025-11-25, server/tools, "Tool Names": 1–128 of `A-Z a-z 0-9 _ - .`): an upstream name that
 * does not, or that does not fit beside its `<server>__` prefix, is replaced by a stand-in from
 * `assignNames` (deterministic across replicas and restarts, collision-free within the
 * catalog), shown with the original as `title` when it has none, and `resolveTool` /
 * `resolvePrompt` map the stand-in back to the original. Tool filters and policies see the
 * original names. Schemas and every other field pass through unchanged. Built once per
 * change, not per request.
 */
export function buildCatalog(sources: CatalogSource[], mode: 'aggregate' | 'single'): Catalog {
  const tools: Tool[] = [];
  const prompts: Prompt[] = [];
  const resources: Resource[] = [];
  const resourceTemplates: ResourceTemplate[] = [];
  const names: ExposedName[] = [];
  const toolIndex = new Map<string, Target>();
  const promptIndex = new Map<string, Target>();
  const prefix = (server: string, name: string) => (mode === 'aggregate' ? `${server}${NAME_SEPARATOR}${name}` : name);
  const wrapUri = (server: string, uri: string) => (mode === 'aggregate' ? aggregatedUri(server, uri) : uri);
  const servers = new Set<string>();
  const takenTools = new Set<string>();
  const takenPrompts = new Set<string>();

  for (const source of sources) {
    servers.add(source.server);
    const { server } = source;
    const budget = mode === 'aggregate' ? MAX_NAME_LENGTH - server.length - NAME_SEPARATOR.length : MAX_NAME_LENGTH;
    const full = (part: string) => prefix(server, part);
    const allowedTools = source.tools.filter((tool) => toolAllowed(tool.name, source.toolFilter));
    const toolNames = assignNames(allowedTools.map((t) => t.name), budget, takenTools, full);
    for (const tool of allowedTools) {
      const part = toolNames.get(tool.name)!;
      const name = full(part);
      if (toolIndex.has(name)) continue; // the upstream listed the same name twice
      const shown = source.injected?.length ? withoutArguments(tool, source.injected) : tool;
      tools.push(renamed(shown, name, part));
      toolIndex.set(name, isConnectTool(tool) ? { server, name: tool.name, connectTool: true } : { server, name: tool.name });
      names.push({ kind: 'tool', server, name, original: tool.name, renamed: part !== tool.name });
    }
    const promptNames = assignNames(source.prompts.map((p) => p.name), budget, takenPrompts, full);
    for (const prompt of source.prompts) {
      const part = promptNames.get(prompt.name)!;
      const name = full(part);
      if (promptIndex.has(name)) continue;
      prompts.push(renamed(prompt, name, part));
      promptIndex.set(name, { server, name: prompt.name });
      names.push({ kind: 'prompt', server, name, original: prompt.name, renamed: part !== prompt.name });
    }
    // Resources are addressed by URI: their names only need to be valid, not unique.
    for (const resource of source.resources) {
      const name = exposedName(resource.name);
      resources.push({ ...renamed(resource, name, name), uri: wrapUri(server, resource.uri) });
      names.push({ kind: 'resource', server, name, original: resource.name, renamed: name !== resource.name });
    }
    for (const template of source.resourceTemplates) {
      const name = exposedName(template.name);
      resourceTemplates.push({ ...renamed(template, name, name), uriTemplate: wrapUri(server, template.uriTemplate) });
      names.push({ kind: 'resourceTemplate', server, name, original: template.name, renamed: name !== template.name });
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
    names,
    instructions: combinedInstructions(sources, mode),
    mode,
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
