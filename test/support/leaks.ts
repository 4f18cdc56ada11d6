import { inspect } from 'node:util';

/**
 * The forms a leaked value would take in text (independent of the masking code under test):
 * raw, JSON-escaped, util.inspect-escaped, URL-encoded, base64 — of the whole value and of each
 * of its non-empty lines.
 */
export function leakForms(value: string): string[] {
  const parts = [value, ...value.split(/\r\n|\r|\n/).filter((l) => l.trim().length > 0)];
  const forms = new Set<string>();
  for (const part of parts) {
    forms.add(part);
    forms.add(JSON.stringify(part).slice(1, -1));
    forms.add(inspect(part).slice(1, -1));
    forms.add(encodeURIComponent(part));
    forms.add(Buffer.from(part).toString('base64').replace(/=+$/, ''));
  }
  return [...forms];
}

/** Which forms of which values appear in `texts`: `["<who> as <form> in <where>"]`, empty when none. */
export function findLeaks(values: Record<string, string>, sources: Record<string, string[]>): string[] {
  const found: string[] = [];
  for (const [who, value] of Object.entries(values)) {
    for (const form of leakForms(value)) {
      for (const [where, texts] of Object.entries(sources)) {
        const hit = texts.find((t) => t.includes(form));
        if (hit !== undefined) found.push(`${who} as ${JSON.stringify(form)} in ${where}: …${hit.slice(Math.max(0, hit.indexOf(form) - 80), hit.indexOf(form) + form.length + 40)}…`);
      }
    }
  }
  return found;
}
