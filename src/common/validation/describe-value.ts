/**
 * A short, bounded rendering of any client-supplied value for an error message or a log
 * field: JSON-like, at most `max` characters (default 80, then `…`), and never deeper than
 * three levels or wider than a few entries per level. It never recurses without bound and
 * never serializes more than it shows, so a value nested thousands of levels deep or many
 * megabytes long costs a few microseconds and cannot overflow the stack (a plain
 * `JSON.stringify(v).slice(0, 80)` does both).
 */
export function describeValue(value: unknown, max = 80): string {
  const out = render(value, 0, max + 1);
  return out.length > max ? `${out.slice(0, max)}…` : out;
}

const MAX_DEPTH = 3;
const MAX_ENTRIES = 8;

function render(value: unknown, depth: number, budget: number): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > budget ? value.slice(0, budget) : value);
    case 'number':
    case 'boolean':
      return String(value);
    case 'bigint':
      return `${value}n`;
    case 'undefined':
      return 'undefined';
    case 'function':
    case 'symbol':
      return typeof value;
    default:
      break;
  }
  if (value === null) return 'null';
  if (depth >= MAX_DEPTH) return Array.isArray(value) ? '[…]' : '{…}';
  const parts: string[] = [];
  let used = 2;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length && i < MAX_ENTRIES && used < budget; i++) {
      const part = render(value[i], depth + 1, budget - used);
      parts.push(part);
      used += part.length + 1;
    }
    if (value.length > parts.length) parts.push('…');
    return `[${parts.join(',')}]`;
  }
  let count = 0;
  for (const key in value as Record<string, unknown>) {
    if (!Object.hasOwn(value as object, key)) continue;
    if (count >= MAX_ENTRIES || used >= budget) {
      parts.push('…');
      break;
    }
    count++;
    const part = `${JSON.stringify(key.length > budget ? key.slice(0, budget) : key)}:${render((value as Record<string, unknown>)[key], depth + 1, budget - used)}`;
    parts.push(part);
    used += part.length + 1;
  }
  return `{${parts.join(',')}}`;
}
