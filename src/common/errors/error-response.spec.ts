import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequestException, HttpException, NotFoundException } from '@nestjs/common';
import { AppError } from './app-error.js';
import { ErrorCode } from './error-code.js';
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

  it('hides everything about an unexpected error', () => {
    const m = mapError(new Error('connect ECONNREFUSED 10.0.0.5:5432 password=hunter2'));
    assert.deepEqual(m, { status: 500, code: 'internal_error', message: 'Internal server error', unexpected: true });
  });
});
