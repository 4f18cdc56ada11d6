import { inspect } from 'node:util';
import { REDACTED } from './redact.js';

/**
 * Shortest configured literal (not from a secret) that is masked: shorter ones are too common
 * to mean anything (`true`, `info`, `3000`), and replacing them would garble the text.
 */
export const MIN_LITERAL_LENGTH = 8;

/** A value to mask, and whether it came from a secret (then masked at any length ≥ 1). */
export interface MaskedValue {
  value: string;
  secret: boolean;
}

const LINE_BREAK = /\r\n|\r|\n/;

/**
 * Every form in which `value` can show up in text Gatehouse or an upstream produced:
 * raw; JSON-escaped (`JSON.stringify` without the quotes); `util.inspect`-escaped (how Node's
 * own errors quote a value, e.g. ERR_INVALID_ARG_VALUE); URL-encoded (`encodeURIComponent`
 * and form encoding, `+` for space); base64 and base64url. For a `Basic` credential
 * (`Basic <base64>`), the decoded `user:password` and the password too (RFC 7617 §2). Empty
 * strings are left out.
 */
export function encodingsOf(value: string): string[] {
  const out = new Set<string>([value, JSON.stringify(value).slice(1, -1), inspect(value).slice(1, -1)]);
  try {
    const uri = encodeURIComponent(value);
    out.add(uri);
    out.add(uri.replace(/%20/g, '+'));
    out.add(new URLSearchParams({ v: value }).toString().slice(2));
  } catch {
    // a lone surrogate cannot be URL-encoded: no such form can appear either
  }
  const bytes = Buffer.from(value, 'utf8');
  out.add(bytes.toString('base64'));
  out.add(bytes.toString('base64').replace(/=+$/, ''));
  out.add(bytes.toString('base64url'));
  const basic = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(value);
  if (basic) {
    const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon >= 0) {
      out.add(decoded);
      if (colon < decoded.length - 1) out.add(decoded.slice(colon + 1));
    }
  }
  out.delete('');
  return [...out];
}

/**
 * Replaces known values, in every encoding ({@link encodingsOf}) and line by line, by
 * `[REDACTED]` in text. Values from secrets are masked at any length; configured literals only
 * from {@link MIN_LITERAL_LENGTH} characters. Each line of a multi-line value is masked on its
 * own too (stderr arrives a line at a time), under the same length rule. Longest forms are
 * replaced first, so a value never leaves a recognizable piece of itself behind.
 */
export class ValueMasker {
  private pattern: RegExp | undefined;
  private readonly forms = new Set<string>();

  constructor(values: Iterable<MaskedValue> = []) {
    this.add(values);
  }

  /** Adds values to mask from now on. */
  add(values: Iterable<MaskedValue>): void {
    let changed = false;
    for (const { value, secret } of values) {
      const min = secret ? 1 : MIN_LITERAL_LENGTH;
      const lines = value.split(LINE_BREAK).filter((line) => line.trim().length > 0);
      const parts = lines.length > 1 ? [value, ...lines] : [value];
      for (const part of parts) {
        if (part.length < min) continue;
        for (const form of encodingsOf(part)) {
          if (form.length >= Math.min(min, part.length) && !this.forms.has(form)) {
            this.forms.add(form);
            changed = true;
          }
        }
      }
    }
    if (changed) {
      const sorted = [...this.forms].sort((a, b) => b.length - a.length).map((f) => f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      this.pattern = new RegExp(sorted.join('|'), 'g');
    }
  }

  /** Whether there is anything to mask. */
  get empty(): boolean {
    return this.forms.size === 0;
  }

  /** `text` with every known form replaced by `[REDACTED]`. */
  mask(text: string): string {
    return this.pattern ? text.replace(this.pattern, REDACTED) : text;
  }
}
