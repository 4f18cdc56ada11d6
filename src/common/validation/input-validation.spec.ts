import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { DatabaseError } from 'pg';
import { QueryFailedError } from 'typeorm';
import { loggableError } from '../http/all-exceptions.filter.js';
import { storedCapabilities, storedClientInfo, MAX_CAPABILITIES_BYTES } from '../../sessions/client-info.js';
import { describeValue } from './describe-value.js';
import { jsonDepthExceeds } from './json-depth.js';
import { parseBody } from './parse-body.js';
import { isPgSafe, pgSafe, pgUnsafeReason, toPgSafe } from './pg-safe.js';

const deepObject = (n: number) => JSON.parse('{"a":'.repeat(n) + '1' + '}'.repeat(n)) as unknown;

describe('pg-safe strings', () => {
  it('names NUL and unpaired surrogates, accepts paired ones', () => {
    assert.match(pgUnsafeReason('a\u0000b') ?? '', /NUL character \(U\+0000\)/);
    assert.match(pgUnsafeReason('a\uD800b') ?? '', /unpaired UTF-16 surrogate/);
    assert.match(pgUnsafeReason('\uDC00') ?? '', /unpaired UTF-16 surrogate/);
    assert.match(pgUnsafeReason('x\uD83D') ?? '', /unpaired/, 'a high surrogate at the end');
    assert.equal(pgUnsafeReason('emoji 😀 and é'), undefined);
    assert.ok(isPgSafe(''));
  });

  it('toPgSafe replaces each bad code unit with U+FFFD and keeps the rest', () => {
    assert.equal(toPgSafe('a\u0000b\uD800c😀\uDC00'), 'a\uFFFDb\uFFFDc😀\uFFFD');
    const ok = 'plain';
    assert.equal(toPgSafe(ok), ok);
  });

  it('pgSafe() makes parseBody answer 400 naming the field and the character class', () => {
    const schema = z.object({ description: pgSafe(z.string().max(10)), tags: z.array(pgSafe(z.string())) }).strict();
    assert.throws(
      () => parseBody(schema, { description: 'x\u0000', tags: ['ok', '\uD800'] }),
      (e: Error & { status?: number; code?: string }) =>
        e.status === 400 &&
        e.code === 'validation_failed' &&
        /description: contains a NUL character/.test(e.message) &&
        /tags\.1: contains an unpaired UTF-16 surrogate/.test(e.message),
    );
    assert.throws(() => parseBody(schema, { description: 'x'.repeat(11), tags: [] }), /description: Too big|at most/);
  });
});

describe('describeValue', () => {
  it('is bounded in length and depth, whatever it is given', () => {
    assert.equal(describeValue('Bad Name'), '"Bad Name"');
    assert.equal(describeValue(undefined), 'undefined');
    assert.equal(describeValue({ a: [1, 'x'] }), '{"a":[1,"x"]}');
    const long = describeValue('y'.repeat(10_000_000));
    assert.ok(long.length <= 81, long);
    // JSON.stringify overflows the stack here (the bug the schema helpers had).
    assert.throws(() => JSON.stringify(deepObject(20_000)), RangeError);
    assert.ok(describeValue(deepObject(20_000)).length <= 81);
    assert.ok(describeValue(Array.from({ length: 100_000 }, (_, i) => i)).length <= 81);
  });
});

describe('parseBody', () => {
  it('reports at most 20 fields, then how many more', () => {
    const schema = z.array(z.number());
    assert.throws(
      () => parseBody(schema, Array.from({ length: 5000 }, () => 'x')),
      (e: Error & { details?: { fields: unknown[]; more: number } }) => e.details?.fields.length === 20 && e.details.more === 4980 && /; and 4980 more$/.test(e.message),
    );
  });
});

describe('jsonDepthExceeds', () => {
  it('counts nested containers, not brackets inside strings', () => {
    assert.equal(jsonDepthExceeds('{}', 1), false);
    assert.equal(jsonDepthExceeds('{"a":[1]}', 1), true);
    assert.equal(jsonDepthExceeds('{"a":[1]}', 2), false);
    assert.equal(jsonDepthExceeds('{"a":"[[[[[[{{{{"}', 1), false);
    assert.equal(jsonDepthExceeds('{"a":"\\"[[[[","b":1}', 1), false, 'an escaped quote does not end the string');
    assert.equal(jsonDepthExceeds(Buffer.from('['.repeat(65) + ']'.repeat(65)), 64), true);
    assert.equal(jsonDepthExceeds(Buffer.from('['.repeat(64) + ']'.repeat(64)), 64), false);
    assert.equal(jsonDepthExceeds('[' + '[],'.repeat(10_000) + '[]]', 2), false, 'width is not depth');
  });
});

describe('what a session stores of initialize', () => {
  it('clientInfo: known string fields only, cut and cleaned', () => {
    const stored = storedClientInfo({ name: 'a\u0000b', version: '1\uD800', title: 't'.repeat(10_000), icons: [{ src: 'data:…' }], extra: { x: 1 }, websiteUrl: 42 });
    assert.deepEqual(Object.keys(stored).sort(), ['name', 'title', 'version']);
    assert.equal(stored.name, 'a\uFFFDb');
    assert.equal(stored.version, '1\uFFFD');
    assert.equal(stored.title.length, 256);
    assert.deepEqual(storedClientInfo('nope'), {});
  });

  it('capabilities: known keys, bounded depth, size and text', () => {
    const stored = storedCapabilities({ roots: { listChanged: true }, sampling: deepObject(5000), bogus: { x: 1 }, elicitation: { 'k\u0000': 'v\uDC00' }, tasks: 'no' });
    assert.deepEqual(Object.keys(stored).sort(), ['elicitation', 'roots', 'sampling']);
    assert.deepEqual(stored.roots, { listChanged: true });
    assert.deepEqual(stored.elicitation, { 'k\uFFFD': 'v\uFFFD' });
    assert.ok(JSON.stringify(stored.sampling).length < 30, 'nesting is cut');
    const huge = storedCapabilities({ experimental: Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`k${i}`, 'x'.repeat(250)])), roots: {} });
    assert.deepEqual(huge, { experimental: {}, roots: {} }, `over ${MAX_CAPABILITIES_BYTES} bytes only the key names are kept`);
    const roots = storedCapabilities(JSON.parse('{"roots":{"__proto__":{"x":1}}}')).roots as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(roots), Object.prototype, 'a "__proto__" key is dropped, not assigned');
    assert.equal(roots.x, undefined);
  });
});

describe('loggableError', () => {
  it('keeps type, message, stack and codes, never the SQL parameters or the driver detail, and cuts long messages', () => {
    const driver = Object.assign(new DatabaseError('unsupported Unicode escape sequence', 0, 'error'), { code: '22P05', severity: 'ERROR', detail: 'SECRET-DETAIL', where: 'SECRET-WHERE' });
    const error = new QueryFailedError('INSERT INTO t VALUES ($1)', [{ name: 'SECRET-PARAM'.repeat(100_000) }], driver);
    const logged = JSON.stringify(loggableError(error));
    assert.doesNotMatch(logged, /SECRET-(PARAM|DETAIL|WHERE)|INSERT INTO/);
    assert.match(logged, /"code":"22P05"/);
    assert.ok(logged.length < 20_000, `${logged.length}`);
    const long = JSON.stringify(loggableError(new Error('m'.repeat(1_000_000))));
    assert.ok(long.length < 20_000);
    assert.equal(typeof loggableError('a string thrown'), 'string');
  });
});
