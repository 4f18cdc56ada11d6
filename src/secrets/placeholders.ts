import { createHash } from 'node:crypto';
import { valueProblem, type ValuePlace } from './value-rules.js';

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
  /** Values that cannot go where they go (see {@link ValuePlace}): which key, which secret or user field, why. */
  invalid: InvalidValue[];
  /** The secret values substituted (for masking: they are masked at any length). */
  secretValues: string[];
}

/** A resolved value its place cannot hold. Names only: never the value. */
export interface InvalidValue {
  /** The env variable, header or argument name. */
  key: string;
  /** Set when the offending characters came from this secret. */
  secret?: string;
  /** Set when they came from `${user:<field>}`. */
  user?: string;
  /** `contains a NUL character (U+0000), which an environment variable cannot hold`. */
  problem: string;
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

/** The keys of `map` whose value uses `${secret:name}`. */
export function keysUsing(map: Record<string, string>, name: string): string[] {
  return Object.entries(map)
    .filter(([, value]) => [...value.matchAll(PLACEHOLDER)].some(([, kind, arg]) => kind === 'secret' && arg === name))
    .map(([key]) => key);
}

/**
 * Fills every placeholder for `caller` from `secrets` (name → value, already merged
 * user-over-shared). With `place`, each substituted secret or user field, and the literal
 * around it, is checked for what that place cannot hold ({@link valueProblem}): a value stored
 * before validation existed, or a user claim, is reported in `invalid` by name, never sent.
 */
export function resolve(map: Record<string, string>, secrets: ReadonlyMap<string, string>, caller: Caller, place?: ValuePlace): Resolved {
  const missingSecrets = new Set<string>();
  const missingUser = new Set<string>();
  const invalid: InvalidValue[] = [];
  const secretValues = new Set<string>();
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(map)) {
    const check = (part: string, from: { secret?: string; user?: string }) => {
      const problem = place && valueProblem(part, place);
      if (problem && !invalid.some((i) => i.key === key && i.secret === from.secret && i.user === from.user)) invalid.push({ key, ...from, problem });
    };
    values[key] = value.replace(PLACEHOLDER, (_all, kind: string, arg: string) => {
      if (kind === 'secret') {
        const secret = secrets.get(arg);
        if (secret === undefined) missingSecrets.add(arg);
        else {
          secretValues.add(secret);
          check(secret, { secret: arg });
        }
        return secret ?? '';
      }
      const field = arg === 'id' ? caller.userId : arg === 'email' ? caller.email : null;
      if (field === null) missingUser.add(arg);
      else check(field, { user: arg });
      return field ?? '';
    });
    check(value.replace(PLACEHOLDER, ''), {});
  }
  return { values, missingSecrets: [...missingSecrets], missingUser: [...missingUser], invalid, secretValues: [...secretValues] };
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
