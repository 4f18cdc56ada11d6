import type { AuthStrategyName } from '../../config/config.schema.js';
import type { RequestResource } from '../jwt-verifier.js';

/** The credential a request carries, classified once by the guard and read by one strategy. */
export type Credential =
  | { kind: 'api_key'; value: string }
  | { kind: 'jwt'; value: string }
  | { kind: 'trusted_header'; user: string; email: string | null; groups: string[] };

/** What a strategy's `validate` receives: the credential the guard classified. */
export interface CredentialRequest {
  credential?: Credential;
  /** The protected resource the request targets (token audiences are checked against it). */
  resource?: RequestResource;
}

/** The request's resource; strategies that check audiences need it. */
export function resourceOf(req: CredentialRequest): RequestResource {
  if (!req.resource) throw new Error('strategy called without the request resource');
  return req.resource;
}

/** A strategy's input: the request, with its classified credential. */
export function credentialOf<K extends Credential['kind']>(req: CredentialRequest, kind: K): Extract<Credential, { kind: K }> {
  const credential = req.credential;
  if (credential?.kind !== kind) throw new Error(`strategy for ${kind} called without a ${kind} credential`);
  return credential as Extract<Credential, { kind: K }>;
}

export type StrategyName = Exclude<AuthStrategyName, 'none'>;

/** `a.b.c` in a JWT payload → string list (arrays, or space/comma-separated strings). */
export function claimList(payload: Record<string, unknown>, path: string): string[] {
  let value: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof value !== 'object' || value === null) return [];
    value = (value as Record<string, unknown>)[part];
  }
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string' && v !== '').slice(0, 100);
  if (typeof value === 'string') return value.split(/[\s,]+/).filter(Boolean).slice(0, 100);
  return [];
}
