import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

/**
 * MCP spec 2025-11-25, server/tools, "Tool Names": 1–128 characters, only ASCII letters,
 * digits, `_`, `-` and `.`. Gatehouse applies the same rule to the prompt and resource names it
 * exposes.
 */
export const MAX_NAME_LENGTH = 128;
/** Exposed names longer than this are legal but rejected by many clients: they are warned about. */
export const LONG_NAME_LENGTH = 64;
const VALID_NAME = /^[A-Za-z0-9_.-]+$/;
/** Hex digits of the SHA-256 of the original name appended to a changed name. */
const HASH_LENGTH = 8;

/** True when `name` meets the spec's tool-name rule within `max` characters. */
export function isValidName(name: string, max = MAX_NAME_LENGTH): boolean {
  return name.length >= 1 && name.length <= max && VALID_NAME.test(name);
}

/**
 * The valid stand-in for an upstream name that breaks the rule or is longer than `budget`
 * (characters, 10 or more): diacritics dropped (`naïve` → `naive`), every run of other
 * characters replaced by `_`, cut to fit, then `_` and 8 hex digits of SHA-256(original) so two
 * originals never share a stand-in. `attempt` > 0 hashes `original\0attempt` instead (collision
 * resolution). Pure: the same input gives the same name on every replica and after restarts.
 * A name that already meets the rule and fits is returned unchanged when `attempt` is 0.
 */
export function exposedName(original: string, budget = MAX_NAME_LENGTH, attempt = 0): string {
  if (attempt === 0 && isValidName(original, budget)) return original;
  const hash = createHash('sha256')
    .update(attempt === 0 ? original : `${original}\0${attempt}`)
    .digest('hex')
    .slice(0, HASH_LENGTH);
  const base = original
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .replace(/[^A-Za-z0-9_.-]+/g, '_')
    .slice(0, Math.max(0, budget - HASH_LENGTH - 1));
  return `${base}_${hash}`;
}

/**
 * Assigns exposed names to a list of originals, collision-free within `taken` (which it
 * extends). Valid names that fit keep their own name and are claimed first, so renaming one
 * tool can never take the name of another; the renamed ones are then placed in code-unit order
 * of their originals (not list order), retrying with the next `attempt` on a clash — the result
 * depends only on the set of names. `full(part)` turns a name part into the full exposed name
 * (e.g. adds `<server>__`); `budget` is the room for the part.
 *
 * @returns original → exposed name part (duplicated originals map once).
 */
export function assignNames(originals: readonly string[], budget: number, taken: Set<string>, full: (part: string) => string = (p) => p): Map<string, string> {
  const assigned = new Map<string, string>();
  const renamed: string[] = [];
  for (const original of new Set(originals)) {
    if (isValidName(original, budget) && !taken.has(full(original))) {
      assigned.set(original, original);
      taken.add(full(original));
    } else {
      renamed.push(original);
    }
  }
  for (const original of renamed.sort()) {
    for (let attempt = 0; ; attempt++) {
      const part = exposedName(original, budget, attempt === 0 && isValidName(original, budget) ? 1 : attempt);
      if (!taken.has(full(part))) {
        assigned.set(original, part);
        taken.add(full(part));
        break;
      }
    }
  }
  return assigned;
}

/** One exposed tool, prompt, resource or template name and what it stands for. */
export interface ExposedName {
  kind: 'tool' | 'prompt' | 'resource' | 'resourceTemplate';
  server: string;
  /** As clients see it. */
  name: string;
  /** As the upstream names it. */
  original: string;
  /** The upstream's name broke the rule or did not fit, so a stand-in is shown (`<server>__` aside). */
  renamed: boolean;
}

/** What an operator should know about one exposed name (admin view, start-up log). */
export interface NameWarning extends ExposedName {
  code: 'renamed' | 'long_name';
  message: string;
}

/**
 * The warnings for a catalog's names (pure): `renamed` when the upstream's name broke the
 * spec's tool-name rule (or did not fit in 128 characters) and a stand-in is shown instead;
 * `long_name` when the exposed name is longer than {@link LONG_NAME_LENGTH} characters, which
 * many clients reject. Pass `server` to keep only that server's names.
 */
export function nameWarnings(catalog: { names: readonly ExposedName[] }, server?: string): NameWarning[] {
  const warnings: NameWarning[] = [];
  for (const entry of catalog.names) {
    if (server !== undefined && entry.server !== server) continue;
    if (entry.renamed) {
      warnings.push({
        ...entry,
        code: 'renamed',
        message: `${entry.kind} ${JSON.stringify(entry.original)} of server "${entry.server}" does not meet the MCP name rule (1-128 of A-Z a-z 0-9 _ - .); exposed as "${entry.name}"`,
      });
    }
    if (entry.name.length > LONG_NAME_LENGTH) {
      warnings.push({
        ...entry,
        code: 'long_name',
        message: `${entry.kind} name "${entry.name}" of server "${entry.server}" is ${entry.name.length} characters; many MCP clients reject names over ${LONG_NAME_LENGTH}`,
      });
    }
  }
  return warnings;
}

/**
 * Logs each {@link nameWarnings} entry of tools and prompts once per (server, kind, exposed
 * name, code) for the life of the process (at most 10,000 remembered), however often catalogs
 * are rebuilt. Resource names are left out of the log: resources are addressed by URI, and
 * servers commonly give them display names with spaces ("Project README").
 */
export class NameWarningLog {
  private readonly seen = new LRUCache<string, true>({ max: 10_000 });

  constructor(private readonly log: (warning: NameWarning) => void) {}

  /** Logs the warnings of `catalog` not logged before. */
  check(catalog: { names: readonly ExposedName[] }): void {
    for (const warning of nameWarnings(catalog)) {
      if (warning.kind !== 'tool' && warning.kind !== 'prompt') continue;
      const key = `${warning.server}\n${warning.kind}\n${warning.name}\n${warning.code}`;
      if (this.seen.has(key)) continue;
      this.seen.set(key, true);
      this.log(warning);
    }
  }
}
