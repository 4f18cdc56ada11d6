import { createHash } from 'node:crypto';

/**
 * Placeholders in a server's `env` / `headers` values and `inject` arguments, resolved for the
 * calling principal at call time:
 * - `${secret:NAME}`: the caller's secret NAME for this server, else the server's shared one;
 * - `${user:id}`, `${user:email}`: who is calling.
 */
const PLACEHOLDER = /\$\{(secret|user):([^}]*)\}/g;
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const USER_FIELDS = new Set(['id', 'email']);

export interface Caller {
  /** Whose secrets to use: the user id (or, without a user, the principal id); null: shared only. */
  owner: string | null;
  userId: string | null;
  email: string | null;
}

export interface Resolved {
  values: Record<string, string>;
  /** Secret names that neither the caller nor the server has. */
  missingSecrets: string[];
  /** `${user:…}` fields the caller cannot provide (e.g. not signed in, no email). */
  missingUser: string[];
}

/** Problems with placeholder syntax in one value, for field-named 400s. */
export function placeholderProblems(value: string): string[] {
  const problems: string[] = [];
  for (const [, kind, arg] of value.matchAll(PLACEHOLDER)) {
    if (kind === 'secret' && !SECRET_NAME.test(arg)) problems.push(`\${secret:${arg}}: expected a secret name [A-Za-z_][A-Za-z0-9_]{0,127}`);
    if (kind === 'user' && !USER_FIELDS.has(arg)) problems.push(`\${user:${arg}}: expected \${user:id} or \${user:email}`);
  }
  return problems;
}

/** The secret names a set of values refers to. */
export function secretNames(maps: Record<string, string>[]): string[] {
  const names = new Set<string>();
  for (const map of maps) for (const value of Object.values(map)) for (const [, kind, arg] of value.matchAll(PLACEHOLDER)) if (kind === 'secret') names.add(arg);
  return [...names];
}

/** Whether any value holds a placeholder (the server then runs per caller). */
export function hasPlaceholders(maps: Record<string, string>[]): boolean {
  return maps.some((map) => Object.values(map).some((v) => v.includes('${secret:') || v.includes('${user:')));
}

/** Fills every placeholder for `caller` from `secrets` (name → value, already merged user-over-shared). */
export function resolve(map: Record<string, string>, secrets: ReadonlyMap<string, string>, caller: Caller): Resolved {
  const missingSecrets = new Set<string>();
  const missingUser = new Set<string>();
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(map)) {
    values[key] = value.replace(PLACEHOLDER, (_all, kind: string, arg: string) => {
      if (kind === 'secret') {
        const secret = secrets.get(arg);
        if (secret === undefined) missingSecrets.add(arg);
        return secret ?? '';
      }
      const field = arg === 'id' ? caller.userId : arg === 'email' ? caller.email : null;
      if (field === null) missingUser.add(arg);
      return field ?? '';
    });
  }
  return { values, missingSecrets: [...missingSecrets], missingUser: [...missingUser] };
}

/** Every placeholder replaced by '' — what the shared (catalog) connection of a per-user server runs with. */
export function blank(map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).map(([k, v]) => [k, v.replace(PLACEHOLDER, '')]));
}

/** A stable digest of resolved values: one pooled process per distinct set. */
export function fingerprint(parts: Record<string, string>[]): string {
  const hash = createHash('sha256');
  for (const part of parts) for (const key of Object.keys(part).sort()) hash.update(`${key}\u0000${part[key]}\u0000`);
  return hash.digest('base64url').slice(0, 22);
}
