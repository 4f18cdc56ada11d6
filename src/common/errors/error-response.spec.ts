import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequestException, HttpException, NotFoundException } from '@nestjs/common';
import { AppError } from './app-error.js';
import { ErrorCode } from './error-code.js';
import { DatabaseError } from 'pg';
import { QueryFailedError } from 'typeorm';
import { markDatabaseUnavailable } from './database-unavailable.js';
import { mapError } from './error-response.js';

describe('mapError', () => {
  it('keeps an AppError as it is', () => {
    const m = mapError(new AppError(ErrorCode.Conflict, 'server "github" already exists', { details: { field: 'name' } }));
    assert.deepEqual(m, { status: 409, code: 'conflict', message: 'server "github" already exists', details: { field: 'name' }, unexpected: false });
  });

  it('maps Nest HTTP exceptions by status', () => {
    assert.equal(mapError(new NotFoundException('Cannot GET /x')).message, 'No route for GET /x');
    assert.equal(mapError(new NotFoundException()).code, 'not_found');
    assert.equal(mapError(new BadRequestException(['a must be a string', 'b is required'])).message, 'a must be a string; b is required');
  });

  it('maps Fastify body errors wrapped by Nest to stable codes', () => {
    const tooLarge = Object.assign(new Error('Request body is too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 });
    const badJson = Object.assign(new Error("Body is not valid JSON but content-type is set to 'application/json'"), {
      code: 'FST_ERR_CTP_INVALID_JSON_BODY',
      statusCode: 400,
    });
    assert.equal(mapError(new HttpException(tooLarge.message, 413, { cause: tooLarge })).code, 'payload_too_large');
    assert.equal(mapError(new HttpException(badJson.message, 400, { cause: badJson })).code, 'invalid_json');
  });

  it('answers 503 service_unavailable (Retry-After) when the database is unreachable, hung or refusing work', () => {
    const unavailable = { status: 503, code: 'service_unavailable', message: 'The database is unavailable; try again shortly', headers: { 'retry-after': '5' }, unexpected: false };
    const shuttingDown = Object.assign(new DatabaseError('terminating connection due to administrator command', 0, 'error'), { code: '57P01', severity: 'FATAL' });
    assert.deepEqual(mapError(new QueryFailedError('SELECT 1', [], shuttingDown)), unavailable);
    assert.deepEqual(mapError(new Error('timeout exceeded when trying to connect')), unavailable, "pg-pool: no free connection within DB_CONNECT_TIMEOUT");
    const refused = markDatabaseUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
    assert.deepEqual(mapError(new Error('Connection terminated due to connection timeout', { cause: refused })), unavailable);
  });

  it('keeps 500 for database errors that are bugs, and for network errors not marked as the database', () => {
    const syntax = Object.assign(new DatabaseError('syntax error at or near "SELEC"', 0, 'error'), { code: '42601', severity: 'ERROR' });
    assert.equal(mapError(new QueryFailedError('SELEC 1', [], syntax)).status, 500);
    assert.equal(mapError(Object.assign(new Error('connect ECONNREFUSED 10.0.0.9:443'), { code: 'ECONNREFUSED' })).status, 500);
  });

  it('hides everything about an unexpected error', () => {
    const m = mapError(new Error('connect ECONNREFUSED 10.0.0.5:5432 password=hunter2'));
    assert.deepEqual(m, { status: 500, code: 'internal_error', message: 'Internal server error', unexpected: true });
  });
});
