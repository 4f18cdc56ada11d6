import { isIPv4, isIPv6 } from 'node:net';
import type { AppConfig } from '../config/config.schema.js';

/**
 * Whether listening on `host` (the `HOST` setting) keeps Gatehouse reachable from this machine
 * only: `localhost`, 127.0.0.0/8, `::1` (bracketed or not, any spelling) and IPv4-mapped
 * 127.x. Anything else — `0.0.0.0`, `::`, a LAN address, a host name — is the network.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIPv4(h)) return h.startsWith('127.');
  if (!isIPv6(h)) return false;
  const canonical = new URL(`http://[${h}]`).hostname;
  // ::ffff:127.0.0.1 is canonically [::ffff:7f00:1]: the first 16 bits are 0x7fxx.
  return canonical === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
}

/** What starting with this configuration means for open access (see {@link openAccessVerdict}). */
export type OpenAccessVerdict =
  | { kind: 'authenticated' }
  | { kind: 'refuse'; message: string }
  | { kind: 'warn'; message: string };

/**
 * With `MCP_AUTH_STRATEGY=none` alone every request is an anonymous admin, who can register a
 * stdio server — run any command on this host — or make Gatehouse fetch any URL. That is
 * acceptable on a loopback `HOST` (warned once at start), and refused on any other unless
 * `MCP_AUTH_ALLOW_NONE_ON_NETWORK=true` (then warned too). `none` beside other strategies admits
 * only an unauthenticated principal that never reaches the admin API, so it is not affected.
 * The refusal message names the settings involved and why; `main.ts` prints it and exits 78
 * like any configuration error.
 */
export function openAccessVerdict(config: AppConfig): OpenAccessVerdict {
  const strategies = config.auth.strategies;
  if (!(strategies.length === 1 && strategies[0] === 'none')) return { kind: 'authenticated' };
  const host = config.http.host;
  if (isLoopbackHost(host)) {
    return {
      kind: 'warn',
      message: `MCP_AUTH_STRATEGY=none: no authentication, every request is an admin that can run processes on this machine; fine on loopback (HOST=${host}), turn on authentication before exposing Gatehouse (docs/auth.md)`,
    };
  }
  if (config.auth.allowNoneOnNetwork) {
    return {
      kind: 'warn',
      message: `MCP_AUTH_STRATEGY=none on HOST=${host} with MCP_AUTH_ALLOW_NONE_ON_NETWORK=true: anyone who can reach this address is an admin that can run processes on this machine`,
    };
  }
  return {
    kind: 'refuse',
    message:
      `MCP_AUTH_STRATEGY: is "none" (no authentication: every request is an anonymous admin) while HOST=${host} listens beyond this machine, ` +
      'so anyone on the network could register a server and run any command here or make Gatehouse fetch any URL. ' +
      'Turn on authentication (e.g. MCP_AUTH_STRATEGY=api_key with node dist/cli.js create-admin-key), listen on HOST=127.0.0.1, ' +
      'or set MCP_AUTH_ALLOW_NONE_ON_NETWORK=true if everyone who can reach this address may do that',
  };
}
